//! Calls on objects of a kind chosen at run time (`keelson get <kind>`,
//! `apply -f` of mixed manifests): [`DynamicApi`] over
//! [`keelson_proto::api::Object`]. [`crate::Api`] is the typed face of the
//! same calls, so the retry policy of every verb lives here, once:
//! reads, compare-and-swap updates and deletes retry on another replica;
//! creates and unconditional updates only when they cannot have reached a
//! server, and a create of unknown outcome is resolved by reading, never
//! by repeating it blindly.

use std::time::Duration;

use keelson_model::{meta_of, meta_of_mut, Kind, Object};
use keelson_proto::api::resources_client::ResourcesClient;
use keelson_proto::api::{
    CreateRequest, DeleteRequest, DeleteResponse, GetRequest, ListRequest, ListResponse,
    UpdateRequest, WatchEvent as RawWatchEvent, WatchRequest,
};

use crate::api::{DeleteParams, ListParams};
use crate::client::{Retry, ATTEMPT_TIMEOUT_MS, CALL_DEADLINE_MS};
use crate::{Client, Error, Result};

/// Pause between the reads that resolve a create of unknown outcome.
const CREATE_RESOLVE_PAUSE_MS: u64 = 100;

fn timeout() -> Option<Duration> {
    Some(Duration::from_millis(ATTEMPT_TIMEOUT_MS))
}

/// A stream that broke because its replica went away: the next stream
/// goes to another one.
fn failed(s: &tonic::Status, target: &crate::client::StreamTarget) {
    if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown) {
        target.failed();
    }
}

/// Calls for objects of `kind` in one namespace ("" for every namespace,
/// or for a cluster-scoped kind).
#[derive(Clone)]
pub struct DynamicApi {
    client: Client,
    kind: Kind,
    namespace: String,
}

impl DynamicApi {
    pub fn new(client: Client, kind: Kind, namespace: &str) -> DynamicApi {
        DynamicApi {
            client,
            kind,
            namespace: namespace.to_string(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The namespace this API addresses ("": every namespace, or a
    /// cluster-scoped kind).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The object's own namespace, else this API's.
    fn with_namespace(&self, mut obj: Object) -> Object {
        if let Some(m) = meta_of_mut(&mut obj) {
            if m.namespace.is_empty() {
                m.namespace = self.namespace.clone();
            }
        }
        obj
    }

    pub async fn get(&self, name: &str) -> Result<Object> {
        let req = GetRequest {
            resource: self.kind.plural().into(),
            namespace: self.namespace.clone(),
            name: name.into(),
            ..Default::default()
        };
        Ok(self
            .client
            .call(Retry::Idempotent, |ch| {
                let r = self.client.request(req.clone(), timeout());
                async move { ResourcesClient::new(ch).get(r).await }
            })
            .await?
            .into_inner())
    }

    /// One page (all of it unless `limit` is set).
    pub async fn list(&self, p: &ListParams) -> Result<ListResponse> {
        let req = ListRequest {
            resource: self.kind.plural().into(),
            namespace: self.namespace.clone(),
            label_selector: p.label_selector.clone(),
            field_selector: p.field_selector.clone(),
            limit: p.limit,
            continue_token: p.continue_token.clone(),
            resource_version: String::new(),
        };
        Ok(self
            .client
            .call(Retry::Idempotent, |ch| {
                let r = self.client.request(req.clone(), timeout());
                async move { ResourcesClient::new(ch).list(r).await }
            })
            .await?
            .into_inner())
    }

    /// Every matching object, page by page (`page` items at a time), and
    /// the revision to watch from.
    pub async fn list_all(&self, p: &ListParams, page: i64) -> Result<(Vec<Object>, String)> {
        let mut p = p.clone().limit(page);
        let mut items = Vec::new();
        loop {
            let res = self.list(&p).await?;
            items.extend(res.items);
            if res.continue_token.is_empty() {
                return Ok((items, res.resource_version));
            }
            p.continue_token = res.continue_token;
        }
    }

    /// Create, attached to a lease when `lease_id` is not 0 (the object is
    /// deleted when the lease expires or is revoked).
    ///
    /// When the replica fails mid-call the outcome is unknown; for an
    /// object with a name the SDK then finds out instead of guessing: it
    /// gets the object (returned if it is the one sent) and, while it is
    /// absent, sends the create again; an AlreadyExists answer to that
    /// (the first attempt committed late) means look again. A create is
    /// never reported as failed when it went through, and a second copy
    /// cannot appear (the name is taken by the first).
    pub async fn create(&self, obj: Object, lease_id: i64) -> Result<Object> {
        let obj = self.with_namespace(obj);
        let (name, ns) = meta_of(&obj)
            .map(|m| (m.name.clone(), m.namespace.clone()))
            .unwrap_or_default();
        let wanted = keelson_model::manifest::desired_state(&obj);
        let req = CreateRequest {
            object: Some(obj),
            lease_id,
        };
        let send = || async {
            self.client
                .call(Retry::UnsentOnly, |ch| {
                    let r = self.client.request(req.clone(), timeout());
                    async move { ResourcesClient::new(ch).create(r).await }
                })
                .await
                .map(tonic::Response::into_inner)
        };
        let deadline = tokio::time::Instant::now() + Duration::from_millis(CALL_DEADLINE_MS);
        let mut last = match send().await {
            Ok(o) => return Ok(o),
            Err(Error::Unavailable(m)) if !name.is_empty() => m,
            Err(e) => return Err(e),
        };
        let here = DynamicApi::new(self.client.clone(), self.kind, &ns);
        while tokio::time::Instant::now() < deadline {
            match here.get(&name).await {
                Ok(existing) => {
                    return if keelson_model::manifest::desired_state(&existing) == wanted {
                        Ok(existing)
                    } else {
                        Err(Error::Unavailable(format!(
                            "create of {name:?} had an unknown outcome ({last}) and the object now differs from the one sent"
                        )))
                    };
                }
                // Not there yet; the first attempt may still commit (an
                // entry forwarded before the failure), so an AlreadyExists
                // answer to the resend sends us back to look again.
                Err(Error::NotFound(_)) => match send().await {
                    Ok(o) => return Ok(o),
                    Err(Error::Unavailable(m)) | Err(Error::AlreadyExists(m)) => last = m,
                    Err(e) => return Err(e),
                },
                Err(Error::Unavailable(m)) => last = m,
                Err(e) => return Err(e),
            }
            tokio::time::sleep(Duration::from_millis(CREATE_RESOLVE_PAUSE_MS)).await;
        }
        Err(Error::Unavailable(last))
    }

    /// Replace the object's spec and metadata (`status`: its status
    /// instead). With a resourceVersion in `obj` this is a
    /// compare-and-swap, safe to repeat (a repeat of one that went through
    /// gets a conflict); without one it is retried only when unsent.
    pub async fn update(&self, obj: Object, status: bool) -> Result<Object> {
        let obj = self.with_namespace(obj);
        let retry = if meta_of(&obj).is_some_and(|m| !m.resource_version.is_empty()) {
            Retry::Idempotent
        } else {
            Retry::UnsentOnly
        };
        let req = UpdateRequest {
            object: Some(obj),
            lease_id: 0,
        };
        Ok(self
            .client
            .call(retry, |ch| {
                let r = self.client.request(req.clone(), timeout());
                async move {
                    let mut c = ResourcesClient::new(ch);
                    if status {
                        c.update_status(r).await
                    } else {
                        c.update(r).await
                    }
                }
            })
            .await?
            .into_inner())
    }

    /// Delete; the answer has the object and whether it is gone (false:
    /// marked for graceful deletion or waiting on finalizers).
    pub async fn delete(&self, name: &str, p: &DeleteParams) -> Result<DeleteResponse> {
        let req = DeleteRequest {
            resource: self.kind.plural().into(),
            namespace: self.namespace.clone(),
            name: name.into(),
            grace_period_seconds: p.grace_period_seconds,
            propagation_policy: p.propagation_policy.clone(),
            precondition_uid: p.precondition_uid.clone(),
            precondition_resource_version: p.precondition_resource_version.clone(),
        };
        Ok(self
            .client
            .call(Retry::Idempotent, |ch| {
                let r = self.client.request(req.clone(), timeout());
                async move { ResourcesClient::new(ch).delete(r).await }
            })
            .await?
            .into_inner())
    }

    /// One raw watch stream from `resource_version` ("" = the current
    /// objects first); a replica that fails is marked so the next call
    /// goes elsewhere. Ends when the replica goes away; see
    /// [`crate::watcher`] for a stream that survives that.
    pub async fn watch(
        &self,
        p: &ListParams,
        resource_version: &str,
    ) -> Result<impl futures::Stream<Item = Result<RawWatchEvent>> + Send + 'static> {
        use futures::StreamExt;
        let req = WatchRequest {
            resource: self.kind.plural().into(),
            namespace: self.namespace.clone(),
            label_selector: p.label_selector.clone(),
            field_selector: p.field_selector.clone(),
            resource_version: resource_version.to_string(),
            allow_bookmarks: true,
            send_initial_events: false,
        };
        let target = self.client.stream_channel();
        let stream = match ResourcesClient::new(target.channel.clone())
            .watch(self.client.request(req, None))
            .await
        {
            Ok(s) => s.into_inner(),
            Err(s) => {
                failed(&s, &target);
                return Err(s.into());
            }
        };
        Ok(stream.map(move |item| {
            item.map_err(|s| {
                failed(&s, &target);
                Error::from(s)
            })
        }))
    }
}
