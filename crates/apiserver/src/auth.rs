//! Authentication (bearer tokens from a tokens file) and authorization
//! (roles admin, viewer and node).
//!
//! The tokens file has one `token,user,role` line per token (`#` starts a
//! comment). A `node` token's user is the node's name: it may read
//! everything, and change only its own Node, its own Lease, the status of
//! the pods bound to it (and delete them, to confirm a graceful deletion),
//! and create Events.

use std::collections::HashMap;
use std::path::Path;

use keelson_model::Kind;
use keelson_proto::api::{object, Object};
use tonic::Request;

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Admin,
    Viewer,
    Node,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            "node" => Some(Role::Node),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
            Role::Node => "node",
        }
    }
}

/// Who made a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub role: Role,
}

/// The known tokens. A token is looked up by its SHA-256 digest, so the
/// time a lookup takes depends on the digest, not on how much of a guess
/// matches a real token (the comparison is as good as constant time).
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    by_digest: HashMap<[u8; 32], Identity>,
    /// Every token and its identity (the API servers present a node's own
    /// tokens to its agent).
    entries: Vec<(String, Identity)>,
    /// Tokens added in memory ([`Tokens::insert`]): kept across reloads
    /// of the file.
    extra: Vec<(String, Identity)>,
}

/// Shortest token accepted from a tokens file (bytes), so a typo'd short
/// string is not a credential.
const TOKEN_LEN_MIN: usize = 16;

fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    pub fn parse(text: &str) -> std::result::Result<Tokens, String> {
        let mut tokens = Tokens::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parts: Vec<&str> = line.split(',').map(str::trim).collect();
            let [token, user, role] = parts.as_slice() else {
                return Err(format!("line {}: expected token,user,role", i + 1));
            };
            if token.len() < TOKEN_LEN_MIN {
                return Err(format!(
                    "line {}: token shorter than {TOKEN_LEN_MIN} characters",
                    i + 1
                ));
            }
            if user.is_empty() {
                return Err(format!("line {}: empty user", i + 1));
            }
            let role = Role::parse(role).ok_or_else(|| {
                format!("line {}: role {role:?} is not admin, viewer or node", i + 1)
            })?;
            tokens.add(
                token,
                Identity {
                    user: user.to_string(),
                    role,
                },
            );
        }
        Ok(tokens)
    }

    fn add(&mut self, token: &str, who: Identity) {
        self.by_digest.insert(digest(token), who.clone());
        self.entries.retain(|(t, _)| t != token);
        self.entries.push((token.to_string(), who));
    }

    pub fn load(path: &Path) -> std::result::Result<Tokens, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("read tokens file {}: {e}", path.display()))?;
        Tokens::parse(&text).map_err(|e| format!("tokens file {}: {e}", path.display()))
    }

    /// The tokens of a new version of the file, with this set's in-memory
    /// tokens kept.
    pub fn reloaded(&self, text: &str) -> std::result::Result<Tokens, String> {
        let mut next = Tokens::parse(text)?;
        for (token, who) in &self.extra {
            next.add(token, who.clone());
            next.extra.push((token.clone(), who.clone()));
        }
        Ok(next)
    }

    /// Add a token (the server's own components get an in-memory one).
    pub fn insert(&mut self, token: &str, user: &str, role: Role) {
        let who = Identity {
            user: user.to_string(),
            role,
        };
        self.add(token, who.clone());
        self.extra.push((token.to_string(), who));
    }

    /// Every token of `user` with `role` (sorted).
    pub fn tokens_of(&self, user: &str, role: Role) -> Vec<String> {
        let mut out: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, id)| id.user == user && id.role == role)
            .map(|(t, _)| t.clone())
            .collect();
        out.sort_unstable();
        out
    }

    pub fn lookup(&self, token: &str) -> Option<&Identity> {
        self.by_digest.get(&digest(token))
    }

    /// The identity behind a gRPC request's `authorization: Bearer` header.
    pub fn authenticate<T>(&self, req: &Request<T>) -> Result<Identity> {
        let header = req.metadata().get("authorization").map(|h| h.to_str());
        self.authenticate_header(header.map(|h| h.unwrap_or("")))
    }

    /// The identity behind an `Authorization` header's value (gRPC
    /// metadata or HTTP alike); None: no header.
    pub fn authenticate_header(&self, header: Option<&str>) -> Result<Identity> {
        let header = header.ok_or_else(|| Error::Unauthenticated("missing bearer token".into()))?;
        let token = header.strip_prefix("Bearer ").ok_or_else(|| {
            Error::Unauthenticated("authorization header is not `Bearer <token>`".into())
        })?;
        self.lookup(token.trim())
            .cloned()
            .ok_or_else(|| Error::Unauthenticated("invalid bearer token".into()))
    }
}

/// The tokens in force: the tokens file's, reloaded without a restart when
/// the file changes (checked every [`RELOAD_POLL`]) or on SIGHUP. A file
/// that fails to parse leaves the tokens as they were (and says why in
/// the log); a revoked token stops working at the next check.
pub struct TokenSource {
    current: std::sync::RwLock<std::sync::Arc<Tokens>>,
    file: Option<std::path::PathBuf>,
}

/// How often the tokens file is checked for changes.
pub const RELOAD_POLL: std::time::Duration = std::time::Duration::from_millis(300);

impl TokenSource {
    pub fn new(tokens: Tokens, file: Option<std::path::PathBuf>) -> TokenSource {
        TokenSource {
            current: std::sync::RwLock::new(std::sync::Arc::new(tokens)),
            file,
        }
    }

    pub fn current(&self) -> std::sync::Arc<Tokens> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn authenticate<T>(&self, req: &Request<T>) -> Result<Identity> {
        self.current().authenticate(req)
    }

    pub fn authenticate_header(&self, header: Option<&str>) -> Result<Identity> {
        self.current().authenticate_header(header)
    }

    pub fn tokens_of(&self, user: &str, role: Role) -> Vec<String> {
        self.current().tokens_of(user, role)
    }

    /// Read the file again and put its tokens in force.
    pub fn reload(&self) -> std::result::Result<usize, String> {
        let Some(path) = &self.file else {
            return Ok(0);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("read tokens file {}: {e}", path.display()))?;
        let next = self
            .current()
            .reloaded(&text)
            .map_err(|e| format!("tokens file {}: {e}", path.display()))?;
        let n = next.entries.len();
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = std::sync::Arc::new(next);
        Ok(n)
    }
}

/// Reload `source` when its file changes or the process gets SIGHUP.
pub async fn watch_tokens(
    source: std::sync::Arc<TokenSource>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Some(path) = source.file.clone() else {
        return;
    };
    let fingerprint = |p: &Path| std::fs::read(p).ok().map(|b| digest_bytes(&b));
    let mut seen = fingerprint(&path);
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(RELOAD_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            Some(()) = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => true,
            _ = stop.changed() => return,
        };
        let now = fingerprint(&path);
        if !forced && now == seen {
            continue;
        }
        seen = now;
        match source.reload() {
            Ok(n) => tracing::info!(file = %path.display(), tokens = n, "reloaded the tokens file"),
            Err(e) => {
                tracing::warn!(error = %e, "tokens file not reloaded; the previous tokens stay")
            }
        }
    }
}

fn digest_bytes(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

/// A new random token (URL-safe, 43 characters).
pub fn new_token() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..43)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    UpdateStatus,
    Delete,
    /// Run a command in a pod's container (`create pods/exec`).
    Exec,
    /// Connect to a pod's port (`create pods/portforward`).
    PortForward,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::UpdateStatus => "update-status",
            Verb::Delete => "delete",
            Verb::Exec | Verb::PortForward => "create",
        }
    }

    fn reads(self) -> bool {
        matches!(self, Verb::Get | Verb::List | Verb::Watch)
    }
}

fn pod_node(o: Option<&Object>) -> Option<&str> {
    match o?.kind.as_ref()? {
        object::Kind::Pod(p) => p.spec.as_ref().map(|s| s.node_name.as_str()),
        _ => None,
    }
}

/// May `who` do `verb` on `kind`/`name`? `old` is the stored object (for
/// update and delete), `new` the object sent (create and updates).
pub fn authorize(
    who: &Identity,
    verb: Verb,
    kind: Kind,
    name: &str,
    old: Option<&Object>,
    new: Option<&Object>,
) -> Result<()> {
    let allowed = match who.role {
        Role::Admin => true,
        // As Kubernetes' `view` role: everything but Secrets.
        Role::Viewer => verb.reads() && kind != Kind::Secret,
        Role::Node => {
            let me = who.user.as_str();
            match kind {
                // As Kubernetes' node authorizer: one object at a time, and
                // only those its pods use (the caller checks the pods, see
                // [`node_reads_by_reference`]).
                Kind::Secret | Kind::ConfigMap => verb == Verb::Get,
                _ if verb.reads() => true,
                Kind::Node => verb != Verb::Delete && name == me,
                Kind::Lease => name == me,
                Kind::Event => verb == Verb::Create,
                // As Kubernetes' NodeRestriction: status and deletion of
                // its own pods, never their spec or metadata.
                Kind::Pod => {
                    matches!(verb, Verb::UpdateStatus | Verb::Delete)
                        && pod_node(old) == Some(me)
                        && (new.is_none() || pod_node(new) == Some(me))
                }
                _ => false,
            }
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(Error::Forbidden(denial(who, verb, kind, name, new.or(old))))
    }
}

/// Whether `who`'s read of `kind` needs [`node_may_read`] as well: a node
/// reads a Secret or ConfigMap only when a pod bound to it uses it.
pub fn node_reads_by_reference(who: &Identity, kind: Kind) -> bool {
    who.role == Role::Node && matches!(kind, Kind::Secret | Kind::ConfigMap)
}

/// May node `who` read `kind` `name`, given the pods of its namespace?
/// Only when one bound to the node uses it (env, envFrom or a volume).
pub fn node_may_read(
    who: &Identity,
    kind: Kind,
    namespace: &str,
    name: &str,
    pods: &[Object],
) -> Result<()> {
    let used = pods.iter().any(|o| match o.kind.as_ref() {
        Some(object::Kind::Pod(p)) => {
            p.spec.as_ref().is_some_and(|s| s.node_name == who.user)
                && keelson_model::pod::config_refs(p)
                    .iter()
                    .any(|r| r.kind == kind && r.name == name)
        }
        _ => false,
    });
    if used {
        return Ok(());
    }
    Err(Error::Forbidden(format!(
        "{} {name:?} is forbidden: User {:?} cannot get resource {:?} in API group \"\" \
         in the namespace {namespace:?}: no relationship found between node {:?} and this \
         object",
        kind.plural(),
        who.user,
        kind.plural(),
        who.user,
    )))
}

/// A denial as Kubernetes words it: `pods "db" is forbidden: User "viewer"
/// cannot delete resource "pods" in API group "" in the namespace
/// "default"` (kubectl prints it as is).
fn denial(who: &Identity, verb: Verb, kind: Kind, name: &str, object: Option<&Object>) -> String {
    let (verb, resource) = match verb {
        Verb::UpdateStatus => ("update", format!("{}/status", kind.plural())),
        Verb::Exec => ("create", format!("{}/exec", kind.plural())),
        Verb::PortForward => ("create", format!("{}/portforward", kind.plural())),
        v => (v.as_str(), kind.plural().to_string()),
    };
    let group = kind.api_version().split_once('/').map_or("", |(g, _)| g);
    let namespace = object
        .and_then(keelson_model::meta_of)
        .map(|m| m.namespace.as_str())
        .filter(|n| !n.is_empty());
    let scope = match (kind.namespaced(), namespace) {
        (false, _) => " at the cluster scope".to_string(),
        (true, Some(ns)) => format!(" in the namespace {ns:?}"),
        (true, None) => String::new(),
    };
    let subject = if name.is_empty() {
        kind.plural().to_string()
    } else {
        format!("{} {name:?}", kind.plural())
    };
    format!(
        "{subject} is forbidden: User {:?} cannot {verb} resource {resource:?} in API group {group:?}{scope}",
        who.user
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_model::Resource;
    use keelson_proto::v1;

    fn pod_on(node: &str) -> Object {
        v1::Pod {
            spec: Some(v1::PodSpec {
                node_name: node.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .into_object()
    }

    #[test]
    fn tokens_file() {
        let t = Tokens::parse(
            "# comment\nAAAAAAAAAAAAAAAAAAAA,alice,admin\n\nBBBBBBBBBBBBBBBBBBBB,n1,node\n",
        )
        .expect("valid");
        assert_eq!(
            t.lookup("AAAAAAAAAAAAAAAAAAAA").map(|i| i.role),
            Some(Role::Admin)
        );
        assert_eq!(
            t.lookup("BBBBBBBBBBBBBBBBBBBB").map(|i| i.user.as_str()),
            Some("n1")
        );
        assert!(t.lookup("nope").is_none());
        assert!(Tokens::parse("short,a,admin").is_err());
        assert!(Tokens::parse("AAAAAAAAAAAAAAAAAAAA,a,root").is_err());
        assert!(Tokens::parse("AAAAAAAAAAAAAAAAAAAA,a").is_err());
        assert_eq!(new_token().len(), 43);
        assert_ne!(new_token(), new_token());
    }

    #[test]
    fn roles() {
        let admin = Identity {
            user: "a".into(),
            role: Role::Admin,
        };
        let viewer = Identity {
            user: "v".into(),
            role: Role::Viewer,
        };
        let n1 = Identity {
            user: "n1".into(),
            role: Role::Node,
        };
        let on1 = pod_on("n1");
        let on2 = pod_on("n2");
        type Case<'a> = (
            &'a Identity,
            Verb,
            Kind,
            &'a str,
            Option<&'a Object>,
            Option<&'a Object>,
            bool,
        );
        let cases: Vec<Case> = vec![
            (&admin, Verb::Delete, Kind::Namespace, "x", None, None, true),
            (&viewer, Verb::List, Kind::Pod, "", None, None, true),
            (&viewer, Verb::Watch, Kind::Pod, "", None, None, true),
            (&viewer, Verb::Create, Kind::Pod, "p", None, None, false),
            (&viewer, Verb::Delete, Kind::Pod, "p", None, None, false),
            (&viewer, Verb::Exec, Kind::Pod, "p", None, None, false),
            (&admin, Verb::Exec, Kind::Pod, "p", None, None, true),
            (
                &viewer,
                Verb::PortForward,
                Kind::Pod,
                "p",
                None,
                None,
                false,
            ),
            (&admin, Verb::PortForward, Kind::Pod, "p", None, None, true),
            (&n1, Verb::Exec, Kind::Pod, "p", Some(&on1), None, false),
            (&n1, Verb::Get, Kind::Deployment, "d", None, None, true),
            (&n1, Verb::UpdateStatus, Kind::Node, "n1", None, None, true),
            (&n1, Verb::Create, Kind::Node, "n1", None, None, true),
            (&n1, Verb::UpdateStatus, Kind::Node, "n2", None, None, false),
            (&n1, Verb::Delete, Kind::Node, "n1", None, None, false),
            (
                &n1,
                Verb::UpdateStatus,
                Kind::Pod,
                "p",
                Some(&on1),
                Some(&on1),
                true,
            ),
            (&n1, Verb::Delete, Kind::Pod, "p", Some(&on1), None, true),
            (
                &n1,
                Verb::UpdateStatus,
                Kind::Pod,
                "p",
                Some(&on2),
                Some(&on2),
                false,
            ),
            (
                &n1,
                Verb::Update,
                Kind::Pod,
                "p",
                Some(&on1),
                Some(&on2),
                false,
            ),
            (&n1, Verb::Create, Kind::Pod, "p", None, Some(&on1), false),
            (&n1, Verb::Create, Kind::Event, "e", None, None, true),
            (&n1, Verb::Delete, Kind::Event, "e", None, None, false),
            (&n1, Verb::Update, Kind::Lease, "n1", None, None, true),
            (
                &n1,
                Verb::Update,
                Kind::Lease,
                "kube-scheduler",
                None,
                None,
                false,
            ),
            (&n1, Verb::Update, Kind::Deployment, "d", None, None, false),
            // Secrets: not for viewers; nodes get one at a time (their
            // pods decide, see node_may_read) and never list them.
            (&viewer, Verb::Get, Kind::Secret, "s", None, None, false),
            (&viewer, Verb::List, Kind::Secret, "", None, None, false),
            (&viewer, Verb::Get, Kind::ConfigMap, "c", None, None, true),
            (&n1, Verb::Get, Kind::Secret, "s", None, None, true),
            (&n1, Verb::List, Kind::Secret, "", None, None, false),
            (&n1, Verb::Watch, Kind::ConfigMap, "", None, None, false),
            (&n1, Verb::Create, Kind::Secret, "s", None, None, false),
        ];
        for (who, verb, kind, name, old, new, want) in cases {
            let got = authorize(who, verb, kind, name, old, new);
            assert_eq!(got.is_ok(), want, "{who:?} {verb:?} {kind} {name}");
            if let Err(e) = got {
                assert_eq!(e.code(), tonic::Code::PermissionDenied);
            }
        }
    }

    #[test]
    fn a_node_reads_what_its_own_pods_use() {
        let n1 = Identity {
            user: "n1".into(),
            role: Role::Node,
        };
        let pod = |node: &str, secret: &str| {
            let p: keelson_proto::v1::Pod = serde_json::from_value(serde_json::json!({
                "spec": {"nodeName": node, "containers": [{"name": "a", "image": "x"}],
                         "volumes": [{"name": "v", "secret": {"secretName": secret}}]}
            }))
            .expect("pod");
            keelson_model::Resource::into_object(p)
        };
        let pods = [pod("n2", "db"), pod("n1", "tls")];
        assert!(node_may_read(&n1, Kind::Secret, "default", "tls", &pods).is_ok());
        assert!(node_may_read(&n1, Kind::ConfigMap, "default", "tls", &pods).is_err());
        match node_may_read(&n1, Kind::Secret, "default", "db", &pods) {
            Err(Error::Forbidden(m)) => assert_eq!(
                m,
                "secrets \"db\" is forbidden: User \"n1\" cannot get resource \"secrets\" in API \
                 group \"\" in the namespace \"default\": no relationship found between node \"n1\" \
                 and this object"
            ),
            other => panic!("{other:?}"),
        }
        assert!(node_reads_by_reference(&n1, Kind::Secret));
        assert!(!node_reads_by_reference(&n1, Kind::Pod));
    }

    #[test]
    fn denials_are_worded_as_kubernetes_words_them() {
        let viewer = Identity {
            user: "ann".into(),
            role: Role::Viewer,
        };
        let mut pod = pod_on("n1");
        if let Some(m) = keelson_model::meta_of_mut(&mut pod) {
            m.namespace = "prod".into();
        }
        let msg = |verb, kind, name, old| match authorize(&viewer, verb, kind, name, old, None) {
            Err(Error::Forbidden(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            msg(Verb::Delete, Kind::Pod, "db", Some(&pod)),
            r#"pods "db" is forbidden: User "ann" cannot delete resource "pods" in API group "" in the namespace "prod""#
        );
        assert_eq!(
            msg(Verb::UpdateStatus, Kind::Node, "n1", None),
            r#"nodes "n1" is forbidden: User "ann" cannot update resource "nodes/status" in API group "" at the cluster scope"#
        );
        assert_eq!(
            msg(Verb::Create, Kind::Deployment, "", None),
            r#"deployments is forbidden: User "ann" cannot create resource "deployments" in API group "apps""#
        );
    }
}
