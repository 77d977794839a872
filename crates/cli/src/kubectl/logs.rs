//! `keelson logs POD [-c CONTAINER] [-f] [--tail N] [--previous]`: a
//! container's log through the API server, which relays it from the agent
//! of the pod's node.

use std::io::Write;

use clap::Args;
use futures::StreamExt;
use keelson_proto::api::resources_client::ResourcesClient;
use keelson_proto::api::LogsRequest;

use super::{ClientArgs, NamespaceArg};

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The pod (or pod/NAME).
    pub pod: String,
    /// The container (needed when the pod has several).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep streaming new output.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub tail: i64,
    /// The previous instance of the container (before its last restart).
    #[arg(short = 'p', long)]
    pub previous: bool,
    #[command(flatten)]
    pub ns: NamespaceArg,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(a: LogsArgs) -> anyhow::Result<()> {
    let name = super::pod_name(&a.pod);
    let client = a.client.client()?;
    let target = client.stream_channel();
    let req = client.request(
        LogsRequest {
            namespace: a.ns.namespace.clone(),
            name,
            container: a.container.clone().unwrap_or_default(),
            follow: a.follow,
            tail_lines: a.tail,
            previous: a.previous,
        },
        None,
    );
    let mut stream = match ResourcesClient::new(target.channel.clone()).logs(req).await {
        Ok(s) => s.into_inner(),
        Err(s) => {
            if s.code() == tonic::Code::Unavailable {
                target.failed();
            }
            return Err(keelson_sdk::Error::from(s).into());
        }
    };
    let mut stdout = std::io::stdout().lock();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(keelson_sdk::Error::from)?;
        if stdout
            .write_all(&chunk.data)
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // The reader went away (a closed pipe): stop quietly.
            return Ok(());
        }
    }
    Ok(())
}
