//! `keelson image load|pull|ls|rm`: the image store of a node agent (the
//! runc runtime's), worked on directly on the node, as `ctr images` and
//! `crictl images` do. Safe while the agent runs (the store locks).

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use keelson_agent::image::pull::PullOptions;
use keelson_agent::image::{ImageRef, Store};

use crate::kubectl::table;

#[derive(clap::Args)]
pub struct StoreArgs {
    /// The agent's data dir (default: ./<node>.agent, as `keelson agent`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The node's name (default: the host name).
    #[arg(long)]
    node: Option<String>,
}

impl StoreArgs {
    fn data_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(d) = &self.data_dir {
            return Ok(d.clone());
        }
        let node = match &self.node {
            Some(n) => n.clone(),
            None => std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .context("give --data-dir or --node")?,
        };
        Ok(PathBuf::from(format!("{node}.agent")))
    }

    fn open(&self) -> anyhow::Result<(Store, PathBuf)> {
        let dir = self.data_dir()?;
        let store = Store::open(&dir.join("images"))
            .with_context(|| format!("open the image store under {}", dir.display()))?;
        Ok((store, dir))
    }
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Import the images of an oci-archive or `docker save` tarball.
    Load {
        file: PathBuf,
        /// Name the image (required when the archive names it only by tag).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Pull an image from its registry.
    Pull {
        image: String,
        /// A registry (host[:port]) reached over plain HTTP (repeatable).
        #[arg(long = "insecure-registry")]
        insecure_registries: Vec<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the node's images.
    Ls {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove images (by name or manifest digest) and the layers no other
    /// image uses; an image a container runs from stays.
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub async fn run(cmd: ImageCommand) -> anyhow::Result<()> {
    match cmd {
        ImageCommand::Load { file, name, store } => {
            let (store, _) = store.open()?;
            let images = tokio::task::spawn_blocking(move || {
                keelson_agent::image::archive::load(&store, &file, name.as_deref())
            })
            .await?
            .map_err(|e| anyhow::anyhow!(e))?;
            for i in images {
                println!("Loaded image: {} ({})", i.name, i.manifest_digest);
            }
            Ok(())
        }
        ImageCommand::Pull {
            image,
            insecure_registries,
            store,
        } => {
            let (store, _) = store.open()?;
            let r = ImageRef::parse(&image).map_err(|e| anyhow::anyhow!(e))?;
            let o = PullOptions {
                insecure_registries,
                auth: None,
            };
            let img = keelson_agent::image::pull::pull(&store, &r, &o)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            println!("Pulled image: {} ({})", img.name, img.manifest_digest);
            Ok(())
        }
        ImageCommand::Ls { store } => {
            let (store, _) = store.open()?;
            let list = store.list().map_err(|e| anyhow::anyhow!(e))?;
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|l| {
                    let (repo, tag) = match ImageRef::parse(&l.name) {
                        Ok(r) => (r.repository(), r.tag().unwrap_or("<none>").to_string()),
                        Err(_) => (l.name.clone(), "<none>".into()),
                    };
                    let id = l
                        .manifest_digest
                        .strip_prefix("sha256:")
                        .unwrap_or(&l.manifest_digest);
                    vec![
                        repo,
                        tag,
                        id.chars().take(12).collect(),
                        table::human_bytes(l.size),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(&table::header(&["IMAGE", "TAG", "IMAGE ID", "SIZE"]), &rows)
            );
            Ok(())
        }
        ImageCommand::Rm { images, store } => {
            let (store, dir) = store.open()?;
            let in_use: BTreeSet<String> = keelson_agent::runc::images_in_use(&dir);
            let mut failed = false;
            for i in images {
                // A name as given, normalised, or a manifest digest.
                let key = if i.starts_with("sha256:") {
                    i.clone()
                } else {
                    ImageRef::parse(&i).map(|r| r.name()).unwrap_or(i.clone())
                };
                match store.remove(&key, &in_use) {
                    Ok(names) => {
                        for n in names {
                            println!("Deleted: {n}");
                        }
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                anyhow::bail!("some images were not removed");
            }
            Ok(())
        }
    }
}
