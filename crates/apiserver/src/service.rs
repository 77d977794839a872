//! The gRPC services: Resources (typed CRUD and watch), Leases and Cluster.
//! Each request is authenticated, authorized, counted and timed here; the
//! store work is in [`crate::registry`] and [`crate::watch`].

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use keelson_model::selector::{FieldSelector, LabelSelector};
use keelson_model::{kind_of, meta_of, Kind, Object};
use keelson_proto::api::cluster_server::Cluster;
use keelson_proto::api::leases_server::Leases;
use keelson_proto::api::resources_server::Resources;
use keelson_proto::api::*;
use keelson_proto::raft::{command, command_result, Command, LeaseGrant, LeaseRevoke};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{authorize, Identity, Role, Verb};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::registry::{parse_revision, Commit, DeleteOptions, ListOptions, Registry};
use crate::watch::{self, WatchSpec, WATCH_QUEUE_EVENTS_MAX};

/// Lease keep-alive replies queued per stream.
const KEEPALIVE_QUEUE_MAX: usize = 64;
/// Longest lease TTL a client may ask for (etcd's limit).
const LEASE_TTL_MAX_SECS: i64 = 9_000_000_000;

#[derive(Clone)]
pub struct Api {
    pub registry: Registry,
    pub tokens: Arc<crate::auth::TokenSource>,
    pub metrics: Arc<Metrics>,
    /// The audit log (`--audit-log-path`), when kept.
    pub audit: Option<Arc<crate::audit::AuditLog>>,
}

/// What the audit log needs of a gRPC request, taken before the handler
/// consumes it.
struct AuditCtx {
    received: std::time::SystemTime,
    started: Instant,
    uri: String,
    user: String,
    groups: Vec<String>,
    user_agent: String,
    kind: Option<Kind>,
    namespace: String,
    name: String,
}

/// The HTTP code Kubernetes would answer for a gRPC outcome (the audit
/// log's `responseStatus.code`).
fn http_code(code: tonic::Code, created: bool) -> u16 {
    use tonic::Code as C;
    match code {
        C::Ok if created => 201,
        C::Ok => 200,
        C::InvalidArgument => 422,
        C::NotFound => 404,
        C::AlreadyExists | C::Aborted | C::FailedPrecondition => 409,
        C::PermissionDenied => 403,
        C::Unauthenticated => 401,
        C::ResourceExhausted => 429,
        C::OutOfRange => 410,
        C::Unavailable => 503,
        C::DeadlineExceeded => 504,
        C::Cancelled => 499,
        _ => 500,
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Status>> + Send>>;
type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;
pub(crate) type LogStream = Pin<Box<dyn Stream<Item = Result<LogChunk, Status>> + Send>>;
type ExecOutputStream = Pin<Box<dyn Stream<Item = Result<ExecOutput, Status>> + Send>>;
/// How long the API server waits to reach a node agent (logs, exec).
const AGENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The metrics label for a requested resource: a known plural or
/// "unknown" (never the raw string, which a client controls).
fn resource_label(resource: &str) -> &'static str {
    kind_from(resource).map(Kind::plural).unwrap_or("unknown")
}

fn kind_from(resource: &str) -> Result<Kind, Error> {
    Kind::ALL
        .into_iter()
        .find(|k| k.plural() == resource)
        .ok_or_else(|| {
            Error::BadRequest(format!(
                "unknown resource {resource:?} (one of: {})",
                Kind::ALL.map(|k| k.plural()).join(", ")
            ))
        })
}

fn object_kind(o: &Option<Object>) -> Result<(Object, Kind), Error> {
    let o = o
        .clone()
        .ok_or_else(|| Error::BadRequest("missing object".into()))?;
    let k = kind_of(&o).ok_or_else(|| Error::BadRequest("empty object".into()))?;
    Ok((o, k))
}

fn name_of(o: &Object) -> String {
    meta_of(o).map(|m| m.name.clone()).unwrap_or_default()
}

impl Api {
    pub(crate) fn who<T>(&self, req: &Request<T>) -> Result<Identity, Error> {
        self.tokens.authenticate(req)
    }

    /// Note a gRPC request for the audit log (None when it keeps none or
    /// does not want this verb).
    fn audit_start<T>(
        &self,
        req: &Request<T>,
        method: &str,
        verb: &str,
        kind: Option<Kind>,
        namespace: &str,
        name: &str,
    ) -> Option<AuditCtx> {
        let log = self.audit.as_ref()?;
        if !log.wants(verb) {
            return None;
        }
        let who = self.tokens.authenticate(req).ok();
        Some(AuditCtx {
            received: std::time::SystemTime::now(),
            started: Instant::now(),
            uri: format!("/keelson.api.Resources/{method}"),
            user: who.as_ref().map(|w| w.user.clone()).unwrap_or_default(),
            groups: who
                .map(|w| vec![format!("keelson:{}", w.role.as_str())])
                .unwrap_or_default(),
            user_agent: req
                .metadata()
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }

    fn audit_done<T>(&self, ctx: Option<AuditCtx>, verb: &str, r: &Result<T, Error>) {
        let (Some(ctx), Some(log)) = (ctx, self.audit.as_ref()) else {
            return;
        };
        let code = match r {
            Ok(_) => tonic::Code::Ok,
            Err(e) => e.code(),
        };
        let subresource = if verb == "update-status" {
            "status"
        } else {
            ""
        };
        let verb = if verb == "update-status" {
            "update"
        } else {
            verb
        };
        log.record(crate::audit::Entry {
            verb,
            request_uri: &ctx.uri,
            user: &ctx.user,
            groups: ctx.groups.clone(),
            object: ctx.kind.map(|k| crate::audit::ObjectRef {
                resource: k.plural(),
                namespace: &ctx.namespace,
                name: &ctx.name,
                api_version: k.api_version(),
                subresource,
            }),
            code: http_code(code, verb == "create"),
            received: ctx.received,
            latency: ctx.started.elapsed(),
            user_agent: &ctx.user_agent,
            via: "grpc",
        });
    }

    /// Count and time one call.
    fn done<T>(
        &self,
        verb: &str,
        resource: &str,
        start: Instant,
        r: Result<T, Error>,
    ) -> Result<T, Status> {
        let code = match &r {
            Ok(_) => tonic::Code::Ok,
            Err(e) => e.code(),
        };
        self.metrics.observe(verb, resource, code, start.elapsed());
        if let Err(e) = &r {
            if e.code() == tonic::Code::Internal {
                tracing::error!(verb, resource, error = %e, "request failed");
            }
        }
        r.map_err(Status::from)
    }
}

#[tonic::async_trait]
impl Resources for Api {
    async fn create(&self, req: Request<CreateRequest>) -> Result<Response<Object>, Status> {
        let start = Instant::now();
        let audit = {
            let o = req.get_ref().object.as_ref();
            let m = o.and_then(meta_of);
            self.audit_start(
                &req,
                "Create",
                "create",
                o.and_then(kind_of),
                m.map_or("", |m| m.namespace.as_str()),
                m.map_or("", |m| m.name.as_str()),
            )
        };
        let r = async {
            let who = self.who(&req)?;
            let req = req.into_inner();
            let (obj, kind) = object_kind(&req.object)?;
            Ok((
                kind,
                self.create_inner(&who, obj, req.lease_id, Commit::Write)
                    .await?,
            ))
        }
        .await;
        let res = kind_label(&r);
        self.audit_done(audit, "create", &r);
        self.done("create", res, start, r.map(|(_, o)| Response::new(o)))
    }

    async fn get(&self, req: Request<GetRequest>) -> Result<Response<Object>, Status> {
        let start = Instant::now();
        let resource = resource_label(&req.get_ref().resource);
        let audit = {
            let g = req.get_ref();
            let kind = kind_from(&g.resource).ok();
            self.audit_start(&req, "Get", "get", kind, &g.namespace, &g.name)
        };
        let r = async {
            let who = self.who(&req)?;
            self.get_inner(&who, &req.into_inner())
                .await
                .map(Response::new)
        }
        .await;
        self.audit_done(audit, "get", &r);
        self.done("get", resource, start, r)
    }

    async fn list(&self, req: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let start = Instant::now();
        let resource = resource_label(&req.get_ref().resource);
        let audit = {
            let l = req.get_ref();
            let kind = kind_from(&l.resource).ok();
            self.audit_start(&req, "List", "list", kind, &l.namespace, "")
        };
        let r = async {
            let who = self.who(&req)?;
            self.list_inner(&who, &req.into_inner())
                .await
                .map(Response::new)
        }
        .await;
        self.audit_done(audit, "list", &r);
        self.done("list", resource, start, r)
    }

    async fn update(&self, req: Request<UpdateRequest>) -> Result<Response<Object>, Status> {
        self.update_grpc(req, false).await
    }

    async fn update_status(&self, req: Request<UpdateRequest>) -> Result<Response<Object>, Status> {
        self.update_grpc(req, true).await
    }

    async fn delete(
        &self,
        req: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let start = Instant::now();
        let resource = resource_label(&req.get_ref().resource);
        let audit = {
            let d = req.get_ref();
            self.audit_start(
                &req,
                "Delete",
                "delete",
                kind_from(&d.resource).ok(),
                &d.namespace,
                &d.name,
            )
        };
        let r = async {
            let who = self.who(&req)?;
            let (object, deleted) = self
                .delete_inner(&who, req.into_inner(), Commit::Write)
                .await?;
            Ok(Response::new(DeleteResponse {
                object: Some(object),
                deleted,
            }))
        }
        .await;
        self.audit_done(audit, "delete", &r);
        self.done("delete", resource, start, r)
    }

    type WatchStream = EventStream;

    async fn watch(&self, req: Request<WatchRequest>) -> Result<Response<EventStream>, Status> {
        let start = Instant::now();
        let resource = resource_label(&req.get_ref().resource);
        let audit = {
            let w = req.get_ref();
            let kind = kind_from(&w.resource).ok();
            self.audit_start(&req, "Watch", "watch", kind, &w.namespace, "")
        };
        let r = async {
            let who = self.who(&req)?;
            let rx = self.watch_inner(&who, &req.into_inner())?;
            let stream: EventStream = Box::pin(ReceiverStream::new(rx));
            Ok(Response::new(stream))
        }
        .await;
        self.audit_done(audit, "watch", &r);
        self.done("watch", resource, start, r)
    }

    type LogsStream = LogStream;
    type ExecStream = ExecOutputStream;

    async fn exec(
        &self,
        req: Request<Streaming<ExecInput>>,
    ) -> Result<Response<ExecOutputStream>, Status> {
        let started = Instant::now();
        let r = async {
            let who = self.who(&req)?;
            let mut input = req.into_inner();
            let start = match input.message().await {
                Ok(Some(ExecInput {
                    input: Some(exec_input::Input::Start(s)),
                })) => s,
                Ok(_) => {
                    return Err(Error::BadRequest(
                        "the first exec input must be start".into(),
                    ))
                }
                Err(s) => return Err(Error::BadRequest(s.message().to_string())),
            };
            let (tx, outputs) = self.exec_inner(&who, start).await?;
            // The client's further inputs, relayed; its stream ending ends
            // the agent's input too (so the command's stdin closes).
            tokio::spawn(async move {
                while let Ok(Some(i)) = input.message().await {
                    if tx.send(i).await.is_err() {
                        return;
                    }
                }
            });
            let outputs: ExecOutputStream = Box::pin(outputs);
            Ok(Response::new(outputs))
        }
        .await;
        self.done("exec", "pods", started, r)
    }

    async fn logs(&self, req: Request<LogsRequest>) -> Result<Response<LogStream>, Status> {
        let start = Instant::now();
        let r = async {
            let who = self.who(&req)?;
            self.logs_inner(&who, req.into_inner())
                .await
                .map(Response::new)
        }
        .await;
        self.done("logs", "pods", start, r)
    }
}

/// Where a read may be served, from the resourceVersion a client sent
/// (Kubernetes' semantics for get and list): `""` the latest
/// (linearizable, after a read barrier), `"0"` any (this replica's state),
/// `"N"` not older than N (this replica's state once it has applied N,
/// else after a barrier).
fn read_locally(registry: &Registry, rv: &str) -> Result<bool, Error> {
    Ok(match parse_revision(rv)? {
        None => false,
        Some(0) => true,
        Some(n) => registry.revision() >= n,
    })
}

impl Api {
    /// Resources.Get, for any front end: authorize, then read.
    pub(crate) async fn get_inner(
        &self,
        who: &Identity,
        req: &GetRequest,
    ) -> Result<Object, Error> {
        let kind = kind_from(&req.resource)?;
        authorize(who, Verb::Get, kind, &req.name, None, None)?;
        let ns = namespace_for(kind, &req.namespace);
        let local = read_locally(&self.registry, &req.resource_version)?;
        if crate::auth::node_reads_by_reference(who, kind) {
            let pods = self.node_pods(who, &ns, local).await?;
            crate::auth::node_may_read(who, kind, &ns, &req.name, &pods)?;
        }
        self.registry
            .read(kind, &ns, &req.name, !local)
            .await?
            .map(|s| s.object)
            .ok_or_else(|| Error::NotFound {
                kind: kind.plural(),
                name: req.name.clone(),
            })
    }

    /// The pods of `ns` bound to node `who` (a node's reads of Secrets and
    /// ConfigMaps are decided on them).
    async fn node_pods(&self, who: &Identity, ns: &str, local: bool) -> Result<Vec<Object>, Error> {
        let fields = FieldSelector::parse(&format!("spec.nodeName={}", who.user), Kind::Pod)
            .map_err(Error::BadRequest)?;
        let page = self
            .registry
            .list(
                Kind::Pod,
                ListOptions {
                    namespace: ns,
                    labels: &LabelSelector::default(),
                    fields: &fields,
                    limit: 0,
                    continue_token: "",
                    local,
                },
            )
            .await?;
        Ok(page.items)
    }

    /// Resources.List, for any front end: authorize, parse the selectors,
    /// read one page at one revision.
    pub(crate) async fn list_inner(
        &self,
        who: &Identity,
        req: &ListRequest,
    ) -> Result<ListResponse, Error> {
        let kind = kind_from(&req.resource)?;
        authorize(who, Verb::List, kind, "", None, None)?;
        let labels = LabelSelector::parse(&req.label_selector).map_err(Error::BadRequest)?;
        let fields = FieldSelector::parse(&req.field_selector, kind).map_err(Error::BadRequest)?;
        if req.limit < 0 {
            return Err(Error::BadRequest("limit must not be negative".into()));
        }
        let local = read_locally(&self.registry, &req.resource_version)?;
        let ns = if kind.namespaced() {
            req.namespace.clone()
        } else {
            String::new()
        };
        let page = self
            .registry
            .list(
                kind,
                ListOptions {
                    namespace: &ns,
                    labels: &labels,
                    fields: &fields,
                    limit: req.limit,
                    continue_token: &req.continue_token,
                    local,
                },
            )
            .await?;
        Ok(ListResponse {
            items: page.items,
            resource_version: page.revision.to_string(),
            continue_token: page.continue_token,
        })
    }
}

impl Api {
    /// Resources.Logs: find the pod's node and its agent's address, and
    /// relay the agent's stream.
    pub(crate) async fn logs_inner(
        &self,
        who: &Identity,
        req: LogsRequest,
    ) -> Result<LogStream, Error> {
        use keelson_proto::api::node_agent_client::NodeAgentClient;
        let t = self
            .pod_agent(
                who,
                Verb::Get,
                &req.namespace,
                &req.name,
                Some(&req.container),
            )
            .await?;
        let attempt = if req.previous {
            t.restarts.checked_sub(1).ok_or_else(|| {
                Error::BadRequest(format!(
                    "previous terminated container {:?} in pod {:?} not found",
                    t.container, req.name
                ))
            })?
        } else {
            t.restarts
        };
        let node = t.node.clone();
        let stream = NodeAgentClient::new(t.channel)
            .logs(NodeLogsRequest {
                pod_uid: t.pod_uid,
                container: t.container,
                attempt,
                follow: req.follow,
                tail_lines: req.tail_lines,
            })
            .await
            .map_err(|s| agent_error(&node, "logs", s))?
            .into_inner();
        Ok(Box::pin(stream))
    }

    /// Resources.Exec and the HTTP API's `pods/exec`: start the command
    /// through the agent of the pod's node. Returns where further inputs
    /// go (stdin, resizes, close) and the agent's outputs.
    pub(crate) async fn exec_inner(
        &self,
        who: &Identity,
        start: ExecStart,
    ) -> Result<(mpsc::Sender<ExecInput>, Streaming<ExecOutput>), Error> {
        let target = self.exec_target(who, &start).await?;
        self.exec_start(target, start).await
    }

    /// The checks of an exec before anything runs: who may, the pod and
    /// container (running), its agent.
    pub(crate) async fn exec_target(
        &self,
        who: &Identity,
        start: &ExecStart,
    ) -> Result<PodAgent, Error> {
        if start.command.is_empty() {
            return Err(Error::BadRequest(
                "you must specify at least 1 command".into(),
            ));
        }
        let t = self
            .pod_agent(
                who,
                Verb::Exec,
                &start.namespace,
                &start.name,
                Some(&start.container),
            )
            .await?;
        let running = t
            .pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.iter().find(|c| c.name == t.container))
            .and_then(|c| c.state.as_ref())
            .is_some_and(|s| s.running.is_some());
        if !running {
            return Err(Error::BadRequest(format!(
                "unable to upgrade connection: container {:?} in pod {:?} is not running",
                t.container, start.name
            )));
        }
        Ok(t)
    }

    /// Start an exec [`Api::exec_target`] allowed.
    pub(crate) async fn exec_start(
        &self,
        t: PodAgent,
        start: ExecStart,
    ) -> Result<(mpsc::Sender<ExecInput>, Streaming<ExecOutput>), Error> {
        use keelson_proto::api::node_agent_client::NodeAgentClient;
        let (tx, rx) = mpsc::channel(16);
        let first = ExecInput {
            input: Some(exec_input::Input::Start(ExecStart {
                pod_uid: t.pod_uid.clone(),
                container: t.container.clone(),
                ..start
            })),
        };
        tx.send(first)
            .await
            .map_err(|_| Error::Internal("exec: input queue closed".into()))?;
        let req = self.agent_request(&t.node, ReceiverStream::new(rx))?;
        let node = t.node.clone();
        let outputs = NodeAgentClient::new(t.channel)
            .exec(req)
            .await
            .map_err(|s| agent_error(&node, "exec", s))?
            .into_inner();
        Ok((tx, outputs))
    }

    /// A call to the agent of `node` that it serves only to API servers
    /// (exec, port-forward): it carries the node's token, the agent's own
    /// credential, which only the node and the API servers know.
    fn agent_request<T>(&self, node: &str, msg: T) -> Result<Request<T>, Error> {
        let mut req = Request::new(msg);
        for token in self.tokens.tokens_of(node, Role::Node) {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| Error::Internal("a node token is not a valid header".into()))?;
            req.metadata_mut().append("authorization", value);
        }
        Ok(req)
    }

    /// The checks of a port-forward: who may, the pod (running, with an
    /// address), its agent.
    pub(crate) async fn port_forward_target(
        &self,
        who: &Identity,
        namespace: &str,
        name: &str,
    ) -> Result<PodAgent, Error> {
        let t = self
            .pod_agent(who, Verb::PortForward, namespace, name, None)
            .await?;
        let status = t.pod.status.clone().unwrap_or_default();
        if status.phase != "Running" || status.pod_ip.is_empty() {
            return Err(Error::BadRequest(format!(
                "unable to forward port because pod is not running. Current status={}",
                status.phase
            )));
        }
        Ok(t)
    }

    /// One forwarded connection through the agent: `inputs` start with
    /// `start`.
    pub(crate) async fn port_forward_call<S>(
        &self,
        t: &PodAgent,
        inputs: S,
    ) -> Result<Streaming<PortForwardOutput>, Error>
    where
        S: Stream<Item = PortForwardInput> + Send + 'static,
    {
        use keelson_proto::api::node_agent_client::NodeAgentClient;
        let req = self.agent_request(&t.node, inputs)?;
        Ok(NodeAgentClient::new(t.channel.clone())
            .port_forward(req)
            .await
            .map_err(|s| agent_error(&t.node, "port-forward", s))?
            .into_inner())
    }

    /// A pod subresource served by the agent of the pod's node (log,
    /// exec, port-forward): the pod, its container (`container`, or its
    /// only one when empty; None: no container is named), and a channel
    /// to the agent.
    async fn pod_agent(
        &self,
        who: &Identity,
        verb: Verb,
        namespace: &str,
        name: &str,
        container: Option<&str>,
    ) -> Result<PodAgent, Error> {
        use keelson_model::Resource;
        use keelson_proto::v1;
        let ns = namespace_for(Kind::Pod, namespace);
        authorize(who, verb, Kind::Pod, name, None, None)?;
        let pod = v1::Pod::from_object(self.registry.get(Kind::Pod, &ns, name).await?)
            .ok_or_else(|| Error::Internal("stored object is not a pod".into()))?;
        let spec = pod.spec.clone().unwrap_or_default();
        let container = match container {
            None => String::new(),
            Some("") => match spec.containers.as_slice() {
                [only] => only.name.clone(),
                many => {
                    let names: Vec<&str> = many.iter().map(|c| c.name.as_str()).collect();
                    return Err(Error::BadRequest(format!(
                        "a container name must be given for pod {name}: choose one of [{}]",
                        names.join(" ")
                    )));
                }
            },
            Some(c) => c.to_string(),
        };
        if !container.is_empty() && !spec.containers.iter().any(|c| c.name == container) {
            return Err(Error::BadRequest(format!(
                "container {container} is not valid for pod {name}"
            )));
        }
        if spec.node_name.is_empty() {
            return Err(Error::BadRequest(format!(
                "pod {name} is not scheduled to a node yet"
            )));
        }
        let restarts = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.iter().find(|c| c.name == container))
            .map_or(0, |c| u32::try_from(c.restart_count).unwrap_or(0));
        let node = v1::Node::from_object(self.registry.get(Kind::Node, "", &spec.node_name).await?)
            .ok_or_else(|| Error::Internal("stored object is not a node".into()))?;
        let status = node.status.unwrap_or_default();
        let address = status
            .addresses
            .iter()
            .find(|a| a.r#type == "InternalIP")
            .map(|a| a.address.clone())
            .ok_or_else(|| {
                Error::Unavailable(format!("node {} has no InternalIP address", spec.node_name))
            })?;
        let port = status
            .daemon_endpoints
            .and_then(|d| d.kubelet_endpoint)
            .map(|k| k.port)
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                Error::Unavailable(format!(
                    "node {} does not serve logs (no kubelet endpoint)",
                    spec.node_name
                ))
            })?;
        // The address comes from the Node object, which a node's own
        // credential may write: only an IP address (no names), never a
        // link-local or unspecified one, and errors that say nothing of
        // what is listening where.
        let ip: std::net::IpAddr = address.parse().map_err(|_| {
            Error::Unavailable(format!(
                "node {} has no usable InternalIP address",
                spec.node_name
            ))
        })?;
        let link_local = match ip {
            std::net::IpAddr::V4(v4) => v4.is_link_local(),
            std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
        };
        let port = u16::try_from(port).map_err(|_| {
            Error::Unavailable(format!("node {} has an invalid agent port", spec.node_name))
        })?;
        if link_local || ip.is_unspecified() || ip.is_multicast() {
            return Err(Error::Unavailable(format!(
                "node {} has no usable InternalIP address",
                spec.node_name
            )));
        }
        let endpoint = tonic::transport::Endpoint::from_shared(format!(
            "http://{}",
            std::net::SocketAddr::new(ip, port)
        ))
        .map_err(|e| Error::Internal(format!("agent address: {e}")))?
        .connect_timeout(AGENT_CONNECT_TIMEOUT);
        let channel = endpoint.connect().await.map_err(|e| {
            tracing::debug!(node = %spec.node_name, error = %e, "agent unreachable");
            unreachable(&spec.node_name)
        })?;
        Ok(PodAgent {
            pod_uid: pod.metadata.clone().unwrap_or_default().uid,
            pod,
            container,
            restarts,
            node: spec.node_name,
            channel,
        })
    }
}

/// What [`Api::pod_agent`] found.
#[derive(Clone)]
pub(crate) struct PodAgent {
    pod: keelson_proto::v1::Pod,
    pub(crate) pod_uid: String,
    container: String,
    /// The container's restart count (its current attempt).
    restarts: u32,
    node: String,
    channel: tonic::transport::Channel,
}

impl PodAgent {
    pub(crate) fn name(&self) -> String {
        self.pod
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default()
    }

    pub(crate) fn pod_ip(&self) -> String {
        self.pod
            .status
            .as_ref()
            .map(|s| s.pod_ip.clone())
            .unwrap_or_default()
    }
}

fn unreachable(node: &str) -> Error {
    Error::Unavailable(format!("cannot reach the agent of node {node}"))
}

/// An agent's refusal as the client's error: the pod's or the request's
/// fault as a bad request, the agent's credential check as forbidden,
/// anything else as the agent being unreachable (its details logged, not
/// told).
fn agent_error(node: &str, what: &str, s: Status) -> Error {
    match s.code() {
        tonic::Code::NotFound | tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => {
            Error::BadRequest(s.message().to_string())
        }
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => Error::Forbidden(format!(
            "the agent of node {node} refused the API server's credential (an agent must run with its node's token)"
        )),
        _ => {
            tracing::debug!(error = %s, "{what}: agent call failed");
            unreachable(node)
        }
    }
}

fn kind_label(r: &Result<(Kind, Object), Error>) -> &'static str {
    match r {
        Ok((k, _)) => k.plural(),
        Err(_) => "unknown",
    }
}

/// The namespace a request names, defaulted for namespaced kinds.
fn namespace_for(kind: Kind, ns: &str) -> String {
    if !kind.namespaced() {
        String::new()
    } else if ns.is_empty() {
        "default".into()
    } else {
        ns.to_string()
    }
}

impl Api {
    async fn update_grpc(
        &self,
        req: Request<UpdateRequest>,
        status_only: bool,
    ) -> Result<Response<Object>, Status> {
        let start = Instant::now();
        let verb = if status_only {
            "update-status"
        } else {
            "update"
        };
        let mut resource = "unknown";
        let audit = {
            let o = req.get_ref().object.as_ref();
            let m = o.and_then(meta_of);
            self.audit_start(
                &req,
                if status_only {
                    "UpdateStatus"
                } else {
                    "Update"
                },
                "update",
                o.and_then(kind_of),
                m.map_or("", |m| m.namespace.as_str()),
                m.map_or("", |m| m.name.as_str()),
            )
        };
        let r = async {
            let who = self.who(&req)?;
            let req = req.into_inner();
            let (obj, kind) = object_kind(&req.object)?;
            resource = kind.plural();
            self.update_inner(&who, obj, req.lease_id, status_only, Commit::Write)
                .await
                .map(Response::new)
        }
        .await;
        self.audit_done(audit, verb, &r);
        self.done(verb, resource, start, r)
    }

    /// Resources.Create, for any front end.
    pub(crate) async fn create_inner(
        &self,
        who: &Identity,
        obj: Object,
        lease: i64,
        commit: Commit,
    ) -> Result<Object, Error> {
        let kind = kind_of(&obj).ok_or_else(|| Error::BadRequest("empty object".into()))?;
        authorize(who, Verb::Create, kind, &name_of(&obj), None, Some(&obj))?;
        self.registry.create(obj, lease, commit).await
    }

    /// Resources.Update and UpdateStatus, for any front end.
    pub(crate) async fn update_inner(
        &self,
        who: &Identity,
        obj: Object,
        lease: i64,
        status_only: bool,
        commit: Commit,
    ) -> Result<Object, Error> {
        let kind = kind_of(&obj).ok_or_else(|| Error::BadRequest("empty object".into()))?;
        let verb = if status_only {
            Verb::UpdateStatus
        } else {
            Verb::Update
        };
        let name = name_of(&obj);
        let who = who.clone();
        let check = move |old: &Object, new: &Object| {
            authorize(&who, verb, kind, &name, Some(old), Some(new))
        };
        self.registry
            .update(obj, lease, status_only, commit, &check)
            .await
    }

    /// Resources.Delete, for any front end: the object and whether it is
    /// gone (false: marked, waiting for its grace period or finalizers).
    pub(crate) async fn delete_inner(
        &self,
        who: &Identity,
        req: DeleteRequest,
        commit: Commit,
    ) -> Result<(Object, bool), Error> {
        let kind = kind_from(&req.resource)?;
        let ns = namespace_for(kind, &req.namespace);
        let name = req.name.clone();
        let who = who.clone();
        let check = move |old: &Object| authorize(&who, Verb::Delete, kind, &name, Some(old), None);
        let opts = DeleteOptions {
            grace_period_seconds: req.grace_period_seconds,
            propagation_policy: req.propagation_policy,
            precondition_uid: req.precondition_uid,
            precondition_resource_version: req.precondition_resource_version,
        };
        self.registry
            .delete(kind, &ns, &req.name, &opts, commit, &check)
            .await
    }

    /// Resources.Watch, for any front end: authorize, parse, start the
    /// watch task; its events (an Err ends the stream).
    pub(crate) fn watch_inner(
        &self,
        who: &Identity,
        req: &WatchRequest,
    ) -> Result<mpsc::Receiver<Result<WatchEvent, Status>>, Error> {
        let kind = kind_from(&req.resource)?;
        authorize(who, Verb::Watch, kind, "", None, None)?;
        let spec = WatchSpec {
            kind,
            namespace: if kind.namespaced() {
                req.namespace.clone()
            } else {
                String::new()
            },
            labels: LabelSelector::parse(&req.label_selector).map_err(Error::BadRequest)?,
            fields: FieldSelector::parse(&req.field_selector, kind).map_err(Error::BadRequest)?,
            from: match parse_revision(&req.resource_version)? {
                Some(i64::MAX) => {
                    return Err(Error::BadRequest("resourceVersion is out of range".into()))
                }
                // The list is linearizable: as new as any revision asked.
                _ if req.send_initial_events => None,
                other => other,
            },
            bookmarks: req.allow_bookmarks,
            mark_listed: req.send_initial_events,
        };
        let (tx, rx) = mpsc::channel(WATCH_QUEUE_EVENTS_MAX);
        tokio::spawn(watch::run(
            self.registry.clone(),
            spec,
            tx,
            self.metrics.watchers.clone(),
        ));
        Ok(rx)
    }
}

#[tonic::async_trait]
impl Leases for Api {
    async fn grant(
        &self,
        req: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let start = Instant::now();
        let r = async {
            let who = self.who(&req)?;
            lease_allowed(&who)?;
            let ttl = req.into_inner().ttl_seconds;
            if ttl <= 0 || ttl > LEASE_TTL_MAX_SECS {
                return Err(Error::BadRequest(format!(
                    "lease TTL {ttl} must be in 1..={LEASE_TTL_MAX_SECS} seconds"
                )));
            }
            // A random positive id; a collision (vanishingly rare) retries.
            for _ in 0..3 {
                let id = (rand::random::<u64>() >> 1).max(1) as i64;
                let res = self
                    .registry
                    .replica
                    .propose(Command {
                        kind: Some(command::Kind::LeaseGrant(LeaseGrant { id, ttl })),
                    })
                    .await
                    .map_err(Error::from)?;
                match res.kind {
                    Some(command_result::Kind::LeaseGrant(g)) => {
                        return Ok(Response::new(LeaseGrantResponse {
                            id: g.id,
                            ttl_seconds: g.ttl,
                        }))
                    }
                    Some(command_result::Kind::Error(e)) => {
                        let err = keelson_store::Error::from_parts(e.code, &e.message);
                        if matches!(err, keelson_store::Error::LeaseExists) {
                            continue;
                        }
                        return Err(err.into());
                    }
                    other => return Err(Error::Internal(format!("unexpected result {other:?}"))),
                }
            }
            Err(Error::Internal("could not pick a free lease id".into()))
        }
        .await;
        self.done("grant", "leases", start, r)
    }

    type KeepAliveStream = KeepAliveStream;

    async fn keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        let who = self.who(&req).map_err(Status::from)?;
        lease_allowed(&who).map_err(Status::from)?;
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(KEEPALIVE_QUEUE_MAX);
        let replica = self.registry.replica.clone();
        tokio::spawn(async move {
            loop {
                let msg = match inbound.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) | Err(_) => return,
                };
                let reply = replica
                    .keep_alive(msg.id)
                    .await
                    .map(|r| LeaseKeepAliveResponse {
                        id: r.id,
                        ttl_seconds: r.ttl,
                    })
                    .map_err(|e| Status::from(Error::from(e)));
                if tx.send(reply).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn revoke(
        &self,
        req: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let start = Instant::now();
        let r = async {
            let who = self.who(&req)?;
            lease_allowed(&who)?;
            let id = req.into_inner().id;
            let res = self
                .registry
                .replica
                .propose(Command {
                    kind: Some(command::Kind::LeaseRevoke(LeaseRevoke { id })),
                })
                .await?;
            match res.kind {
                Some(command_result::Kind::Error(e)) => {
                    Err(keelson_store::Error::from_parts(e.code, &e.message).into())
                }
                _ => Ok(Response::new(LeaseRevokeResponse {})),
            }
        }
        .await;
        self.done("revoke", "leases", start, r)
    }
}

fn lease_allowed(who: &Identity) -> Result<(), Error> {
    if who.role == Role::Viewer {
        return Err(Error::Forbidden(format!(
            "user {:?} (role viewer) may not use leases",
            who.user
        )));
    }
    Ok(())
}

/// Bytes per chunk of a snapshot stream.
const SNAPSHOT_CHUNK_BYTES: usize = 256 * 1024;

/// How long `cluster status` waits for each replica.
const STATUS_WAIT_MS: u64 = 1500;

#[tonic::async_trait]
impl Cluster for Api {
    async fn status(
        &self,
        req: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        self.who(&req).map_err(Status::from)?;
        let replica = &self.registry.replica;
        let members = replica.members();
        let asks = members.iter().map(|m| async move {
            let peer = m.peer_ur_ls.first().cloned().unwrap_or_default();
            let mut out = ReplicaStatus {
                name: m.name.clone(),
                id: format!("{:x}", m.id),
                peer_url: peer.clone(),
                client_url: m.client_ur_ls.first().cloned().unwrap_or_default(),
                learner: m.is_learner,
                ..Default::default()
            };
            let ask = replica.member_status(m.id, &peer);
            match tokio::time::timeout(Duration::from_millis(STATUS_WAIT_MS), ask).await {
                Ok(Ok(s)) => {
                    out.leader = s.leader == m.id;
                    out.term = s.raft_term;
                    out.commit_index = s.raft_index;
                    out.applied_index = s.raft_applied_index;
                    out.revision = s.header.map(|h| h.revision).unwrap_or(0);
                    out.db_size_bytes = s.db_size.max(0) as u64;
                }
                Ok(Err(e)) => out.error = e.to_string(),
                Err(_) => out.error = "no answer in time".into(),
            }
            out
        });
        let replicas = futures::future::join_all(asks).await;
        Ok(Response::new(ClusterStatusResponse {
            replicas,
            answered_by: replica.name.clone(),
        }))
    }

    type SnapshotStream = Pin<Box<dyn Stream<Item = Result<ClusterSnapshotChunk, Status>> + Send>>;

    /// The answering replica's store as a backup file. Admins only: it
    /// holds every object, Secrets included.
    async fn snapshot(
        &self,
        req: Request<ClusterSnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let who = self.who(&req).map_err(Status::from)?;
        if who.role != Role::Admin {
            return Err(Error::Forbidden(format!(
                "User {:?} cannot take snapshots: they hold every object, Secrets included (admins only)",
                who.user
            ))
            .into());
        }
        let (revision, bytes) = self
            .registry
            .replica
            .backup()
            .await
            .map_err(|e| Status::from(Error::from(e)))?;
        let total = bytes.len();
        let chunks = (0..total.div_ceil(SNAPSHOT_CHUNK_BYTES)).map(move |i| {
            let start = i * SNAPSHOT_CHUNK_BYTES;
            let end = (start + SNAPSHOT_CHUNK_BYTES).min(total);
            Ok(ClusterSnapshotChunk {
                data: bytes[start..end].to_vec(),
                remaining_bytes: (total - end) as u64,
                revision,
            })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn who_am_i(
        &self,
        req: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        let who = self.who(&req).map_err(Status::from)?;
        Ok(Response::new(WhoAmIResponse {
            user: who.user,
            role: who.role.as_str().to_string(),
        }))
    }
}
