//! Small calls over the etcd v3 API, with timeouts, for tests.

use std::time::Duration;

use keelson_proto::etcdserverpb::kv_client::KvClient;
use keelson_proto::etcdserverpb::{PutRequest, RangeRequest, RangeResponse};
use tonic::transport::Channel;

use crate::cluster::channel;

/// A KV client of one endpoint (connects lazily).
pub fn kv(endpoint: &str) -> anyhow::Result<KvClient<Channel>> {
    Ok(KvClient::new(channel(endpoint)?))
}

/// Put `key`; the revision of the write.
pub async fn put(c: &mut KvClient<Channel>, key: &str, value: &str) -> Result<i64, tonic::Status> {
    let mut req = tonic::Request::new(PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..Default::default()
    });
    req.set_timeout(Duration::from_secs(3));
    let r = c.put(req).await?.into_inner();
    Ok(r.header.map(|h| h.revision).unwrap_or(0))
}

pub async fn get(
    c: &mut KvClient<Channel>,
    key: &str,
    serializable: bool,
) -> Result<RangeResponse, tonic::Status> {
    let mut req = tonic::Request::new(RangeRequest {
        key: key.as_bytes().to_vec(),
        serializable,
        ..Default::default()
    });
    req.set_timeout(Duration::from_secs(3));
    Ok(c.range(req).await?.into_inner())
}

/// Every key (value, mod revision) from "\0" onwards as one member sees
/// it, with the revision of the read.
pub async fn dump(
    c: &mut KvClient<Channel>,
    serializable: bool,
) -> Result<(i64, Vec<(Vec<u8>, Vec<u8>, i64)>), tonic::Status> {
    let mut req = tonic::Request::new(RangeRequest {
        key: vec![0],
        range_end: vec![0],
        serializable,
        ..Default::default()
    });
    req.set_timeout(Duration::from_secs(5));
    let r = c.range(req).await?.into_inner();
    let rev = r.header.map(|h| h.revision).unwrap_or(0);
    Ok((
        rev,
        r.kvs
            .into_iter()
            .map(|kv| (kv.key, kv.value, kv.mod_revision))
            .collect(),
    ))
}
