//! `keelson snapshot save|status|restore`: backups of the store and the
//! way back from a lost quorum (the runbook is `docs/disaster-recovery.md`).
//!
//! `save` streams a backup from a replica through the API (admins only)
//! into a file written whole or not at all; `status` checks a file and
//! says what it holds; `restore` seeds the data dir of one member of a new
//! cluster from it (run once per member, then start each with `keelson
//! server` and the same `--initial-cluster`).

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use futures::StreamExt;
use keelson_apiserver::backup;
use keelson_proto::api::cluster_client::ClusterClient;
use keelson_proto::api::ClusterSnapshotRequest;

use crate::kubectl::ClientArgs;

#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Save a snapshot of a replica's store to FILE (admins only).
    Save(SaveArgs),
    /// Check a snapshot file and print its revision, keys, size and checksum.
    Status(StatusArgs),
    /// Seed the data dir of one member of a new cluster from a snapshot.
    Restore(RestoreArgs),
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Where to write it (replaced only once the whole snapshot is on disk).
    pub file: PathBuf,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    pub file: PathBuf,
    /// `table` or `json`.
    #[arg(short = 'w', long = "write-out", default_value = "table")]
    pub output: String,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    pub file: PathBuf,
    /// The new member's data dir; it must not exist or be empty.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The new member's name, as in --initial-cluster.
    #[arg(long)]
    pub name: String,
    /// Every member of the new cluster as name=peer-url,... (the same for
    /// each member's restore and for `keelson server`).
    #[arg(long)]
    pub initial_cluster: String,
    /// Move the revision this far past the snapshot's, so revisions clients
    /// saw after the snapshot are never reused for other writes.
    #[arg(long, default_value_t = 1_000_000_000)]
    pub bump_revision: i64,
    /// Compact history at the bumped revision, so watches and caches from
    /// before it get "compacted" (HTTP 410) and relist.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub mark_compacted: bool,
}

pub async fn run(cmd: SnapshotCommand) -> anyhow::Result<()> {
    match cmd {
        SnapshotCommand::Save(a) => save(a).await,
        SnapshotCommand::Status(a) => status(a),
        SnapshotCommand::Restore(a) => restore(a),
    }
}

async fn save(a: SaveArgs) -> anyhow::Result<()> {
    let client = a.client.client()?;
    let target = client.stream_channel();
    let req = client.request(ClusterSnapshotRequest {}, None);
    let mut stream = match ClusterClient::new(target.channel.clone())
        .snapshot(req)
        .await
    {
        Ok(s) => s.into_inner(),
        Err(s) => {
            if s.code() == tonic::Code::Unavailable {
                target.failed();
            }
            return Err(keelson_sdk::Error::from(s).into());
        }
    };
    let mut bytes = Vec::new();
    let mut done = false;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(keelson_sdk::Error::from)?;
        bytes.extend_from_slice(&chunk.data);
        done = chunk.remaining_bytes == 0;
    }
    if !done {
        bail!(
            "the snapshot stream ended early, after {} bytes",
            bytes.len()
        );
    }
    // Check before keeping: a file that would not restore is not a backup.
    let status = backup::decode(&bytes)
        .map_err(|e| anyhow!("the replica sent a damaged snapshot: {e}"))?
        .status();
    let path = if a.file.is_absolute() {
        a.file.clone()
    } else {
        std::env::current_dir()?.join(&a.file)
    };
    let dir = path
        .parent()
        .map(|p| p.to_path_buf())
        .context("the file needs a directory")?;
    keelson_apiserver::write_durably(&dir, &path, &bytes).map_err(|e| anyhow!(e))?;
    println!(
        "Snapshot saved at {} (revision {}, {} keys, {} bytes, sha256 {})",
        a.file.display(),
        status.revision,
        status.total_keys,
        status.total_size,
        status.sha256
    );
    Ok(())
}

fn status(a: StatusArgs) -> anyhow::Result<()> {
    let s = backup::read(&a.file).map_err(|e| anyhow!(e))?.status();
    match a.output.as_str() {
        "json" => println!("{}", serde_json::to_string(&s)?),
        "table" => {
            // humantime formats years up to 9999; a later time is nonsense.
            let secs = u64::try_from(s.taken_unix)
                .unwrap_or(0)
                .min(253_402_300_799);
            let taken = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            let rows = [
                ("REVISION", s.revision.to_string()),
                ("COMPACTED", s.compacted_revision.to_string()),
                ("TOTAL KEYS", s.total_keys.to_string()),
                ("LEASES", s.leases.to_string()),
                ("DATA SIZE", s.data_bytes.to_string()),
                ("TOTAL SIZE", s.total_size.to_string()),
                ("SHA256", s.sha256.clone()),
                (
                    "TAKEN",
                    humantime::format_rfc3339_seconds(taken).to_string(),
                ),
                ("FROM", format!("{} (cluster {})", s.member, s.cluster_id)),
            ];
            for (k, v) in rows {
                println!("{k:<11} {v}");
            }
        }
        other => bail!("--write-out must be table or json, not {other:?}"),
    }
    Ok(())
}

fn restore(a: RestoreArgs) -> anyhow::Result<()> {
    let initial_cluster = crate::server_cmd::parse_initial_cluster(&a.initial_cluster)?;
    let b = backup::read(&a.file).map_err(|e| anyhow!(e))?;
    let from = b.status();
    let opts = backup::RestoreOptions {
        data_dir: a.data_dir.clone(),
        name: a.name.clone(),
        initial_cluster,
        bump_revision: a.bump_revision,
        mark_compacted: a.mark_compacted,
    };
    let r = backup::restore(b, &opts).map_err(|e| anyhow!(e))?;
    println!(
        "Restored {} keys of revision {} into {} for member {} ({:x}); the new cluster starts at revision {}{}",
        from.total_keys,
        from.revision,
        a.data_dir.display(),
        a.name,
        r.member_id,
        r.revision,
        if r.compacted_revision == r.revision {
            ", history before it compacted"
        } else {
            ""
        }
    );
    Ok(())
}
