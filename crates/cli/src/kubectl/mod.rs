//! kubectl-like client commands: `get`, `describe`, `apply`, `create`,
//! `delete`, `scale`, `cluster status`, `whoami`.
//!
//! The calls go over the SDK's [`Client`] (failover, retries, the token);
//! commands that work on any kind call the Resources service with the
//! generic [`Object`] (see [`Resources`]). What is printed is built by pure
//! functions: a table's columns and cells by [`keelson_model::printers`]
//! (the same the API server's server-side Tables serve), the rest in
//! [`table`], [`printers`], [`describe`] and [`apply`].

pub mod apply;
pub mod describe;
pub mod exec;
pub mod logs;
pub mod printers;
pub mod rollout;
pub mod table;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use futures::StreamExt;
use keelson_model::{kind_of, manifest, meta_of, Kind, Object, Resource};
use keelson_proto::api::cluster_client::ClusterClient;
use keelson_proto::api::{ClusterStatusRequest, DeleteResponse, WhoAmIRequest};
use keelson_proto::v1;
use keelson_sdk::client::{Retry, ATTEMPT_TIMEOUT_MS};
use keelson_sdk::{Client, Config, DeleteParams, DynamicApi, Error as SdkError, ListParams};

use self::apply::Item;

/// Tries of a read-modify-write (apply, scale) that keeps meeting conflicts.
const CONFLICT_RETRIES_MAX: usize = 5;
/// Page size of lists.
const LIST_PAGE_ITEMS: i64 = 500;
/// Pause before a broken `get -w` watch resumes.
const WATCH_RESUME_MS: u64 = 500;

/// Where the cluster is and who we are (every client command).
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// API server URL(s), comma-separated; overrides the config's endpoints.
    #[arg(long, env = "KEELSON_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// Bearer token; overrides the config's.
    #[arg(long, env = "KEELSON_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Client config file [default: $KEELSON_CONFIG or ~/.keelson/config].
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// `-n` for commands on namespaced objects.
#[derive(Args, Debug, Clone)]
pub struct NamespaceArg {
    /// Namespace.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Wide,
    Yaml,
    Json,
    Name,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// Resource type (pods, po, deployment, svc...), or TYPE/NAME.
    pub kind: String,
    /// Names of objects (default: all).
    pub names: Vec<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Output>,
    /// Label selector (`app=web,tier!=db`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Field selector (`status.phase=Running`).
    #[arg(long)]
    pub field_selector: Option<String>,
    #[command(flatten)]
    pub ns: NamespaceArg,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// After listing, watch for changes.
    #[arg(short = 'w', long)]
    pub watch: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct DescribeArgs {
    /// Resource type, or TYPE/NAME.
    pub kind: String,
    pub names: Vec<String>,
    #[command(flatten)]
    pub ns: NamespaceArg,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// Manifest file, directory (its *.yaml, *.yml, *.json) or `-` for stdin; repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    /// Namespace for objects that do not name one.
    #[command(flatten)]
    pub ns: NamespaceArg,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Cascade {
    Background,
    Orphan,
    Foreground,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Resource type (or TYPE/NAME), then names.
    pub args: Vec<String>,
    /// Delete the objects in these manifests instead.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<String>,
    /// Seconds a pod gets to stop (default: its own; 0: at once).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub grace_period: i64,
    /// What happens to the objects this one owns.
    #[arg(long, value_enum, default_value = "background")]
    pub cascade: Cascade,
    #[command(flatten)]
    pub ns: NamespaceArg,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// `deployment` or `replicaset` (or TYPE/NAME).
    pub kind: String,
    pub name: Option<String>,
    /// The new number of replicas.
    #[arg(long)]
    pub replicas: i32,
    #[command(flatten)]
    pub ns: NamespaceArg,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Every replica's Raft state, as one replica sees it.
    Status(ClientArgs),
}

// ---- connection ----

impl ClientArgs {
    /// The config: the file, with --server and --token over it. With
    /// --server and no file, the flags alone.
    pub fn config(&self) -> anyhow::Result<Config> {
        let path = self.config.clone().unwrap_or_else(Config::default_path);
        let server = self.server.as_deref().filter(|s| !s.trim().is_empty());
        let mut cfg = match server {
            Some(_) if !path.exists() => Config::default(),
            _ => Config::load(&path).map_err(|e| match e {
                SdkError::Config(m) if !path.exists() => anyhow!(
                    "{m} (no client config: pass --server and --token, or set KEELSON_CONFIG)"
                ),
                e => anyhow!("{e}"),
            })?,
        };
        if let Some(s) = server {
            cfg.endpoints = parse_servers(s);
        }
        if let Some(t) = &self.token {
            cfg.token = t.clone();
        }
        Ok(cfg)
    }

    pub fn client(&self) -> anyhow::Result<Client> {
        let cfg = self.config()?;
        let _ = ENDPOINTS.set(cfg.endpoints.join(","));
        Client::new(&cfg).map_err(|e| anyhow!("{e}"))
    }
}

/// `a:1,http://b:2` → `["http://a:1", "http://b:2"]`.
pub fn parse_servers(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.contains("://") {
                s.trim_end_matches('/').to_string()
            } else {
                format!("http://{}", s.trim_end_matches('/'))
            }
        })
        .collect()
}

fn attempt_timeout() -> Option<Duration> {
    Some(Duration::from_millis(ATTEMPT_TIMEOUT_MS))
}

/// Calls on objects of any kind: the SDK's [`DynamicApi`] (which holds
/// the retry policy of every verb) for the kind and namespace at hand.
#[derive(Clone)]
pub struct Resources {
    client: Client,
}

impl Resources {
    pub fn new(client: Client) -> Resources {
        Resources { client }
    }

    fn api(&self, kind: Kind, ns: &str) -> DynamicApi {
        DynamicApi::new(self.client.clone(), kind, ns)
    }

    /// The API of `obj`'s own kind and namespace.
    fn api_of(&self, obj: &Object) -> Result<DynamicApi, SdkError> {
        let kind = kind_of(obj).ok_or_else(|| SdkError::Other("an object of no kind".into()))?;
        let ns = meta_of(obj)
            .map(|m| m.namespace.clone())
            .unwrap_or_default();
        Ok(self.api(kind, &ns))
    }

    pub async fn get(&self, kind: Kind, ns: &str, name: &str) -> Result<Object, SdkError> {
        self.api(kind, ns).get(name).await
    }

    /// Every matching object (all pages) and the revision to watch from.
    pub async fn list(
        &self,
        kind: Kind,
        ns: &str,
        labels: &str,
        fields: &str,
    ) -> Result<(Vec<Object>, String), SdkError> {
        let p = ListParams::default().labels(labels).fields(fields);
        self.api(kind, ns).list_all(&p, LIST_PAGE_ITEMS).await
    }

    pub async fn create(&self, obj: Object) -> Result<Object, SdkError> {
        self.api_of(&obj)?.create(obj, 0).await
    }

    /// Update; with a resourceVersion in `obj` a compare-and-swap.
    pub async fn update(&self, obj: Object) -> Result<Object, SdkError> {
        self.api_of(&obj)?.update(obj, false).await
    }

    pub async fn delete(
        &self,
        kind: Kind,
        ns: &str,
        name: &str,
        grace: Option<i64>,
        policy: &str,
    ) -> Result<DeleteResponse, SdkError> {
        let p = DeleteParams {
            grace_period_seconds: grace,
            propagation_policy: policy.into(),
            ..Default::default()
        };
        self.api(kind, ns).delete(name, &p).await
    }
}

// ---- errors and output ----

/// kubectl's wording for errors about one object: `pods "x" not found`.
fn object_error(e: SdkError, kind: Kind, name: &str) -> anyhow::Error {
    match e {
        SdkError::NotFound(_) => anyhow!("{} {name:?} not found", kind.plural()),
        SdkError::AlreadyExists(_) => anyhow!("{} {name:?} already exists", kind.plural()),
        e => sdk_error(e),
    }
}

/// The endpoints the command talks to, for errors that mean no replica
/// answered.
static ENDPOINTS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn sdk_error(e: SdkError) -> anyhow::Error {
    match (&e, ENDPOINTS.get()) {
        (SdkError::Unavailable(_), Some(at)) => anyhow!("{e} (API server: {at})"),
        // The server's message already says "forbidden: ...".
        (SdkError::Forbidden(m), _) if m.starts_with("forbidden") => anyhow!("{m}"),
        _ => anyhow!("{e}"),
    }
}

/// No replica could be reached: the rest of a batch would only wait too.
fn unreachable(e: &SdkError) -> bool {
    matches!(e, SdkError::Unavailable(_))
}

/// Write to stdout; a closed pipe (`| head`) ends the program quietly.
fn out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(e.into()),
    }
}

/// Some objects failed (each already reported): exit 1.
fn finish(failed: bool) -> anyhow::Result<()> {
    if failed {
        let _ = std::io::stdout().flush();
        std::process::exit(1);
    }
    Ok(())
}

fn report(e: &anyhow::Error) {
    eprintln!("Error: {e:#}");
}

/// A client command's end: an error is one `Error: ...` line on stderr
/// and exit code 1 (no backtrace, whatever RUST_BACKTRACE says).
pub fn exit_on_error(r: anyhow::Result<()>) -> anyhow::Result<()> {
    if let Err(e) = r {
        let _ = std::io::stdout().flush();
        report(&e);
        std::process::exit(1);
    }
    Ok(())
}

/// A pod argument: `NAME`, `pod/NAME` or `pods/NAME`.
pub fn pod_name(arg: &str) -> String {
    arg.strip_prefix("pod/")
        .or_else(|| arg.strip_prefix("pods/"))
        .unwrap_or(arg)
        .to_string()
}

fn parse_kind(s: &str) -> anyhow::Result<Kind> {
    Kind::parse(s).ok_or_else(|| anyhow!("the server doesn't have a resource type {s:?}"))
}

/// `KIND NAME...` or `KIND/NAME`.
fn kind_and_names(kind: &str, names: &[String]) -> anyhow::Result<(Kind, Vec<String>)> {
    if let Some((k, n)) = kind.split_once('/') {
        if !names.is_empty() {
            bail!("there is no need to name a resource as TYPE/NAME and also give names");
        }
        return Ok((parse_kind(k)?, vec![n.to_string()]));
    }
    Ok((parse_kind(kind)?, names.to_vec()))
}

fn scope_ns(kind: Kind, ns: &str) -> String {
    if kind.namespaced() {
        ns.to_string()
    } else {
        String::new()
    }
}

fn name_of(o: &Object) -> String {
    meta_of(o).map(|m| m.name.clone()).unwrap_or_default()
}

// ---- get ----

fn list_document(items: &[Object]) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": items.iter().map(manifest::to_value).collect::<Vec<_>>(),
        "metadata": {"resourceVersion": ""},
    })
}

/// The objects as `-o yaml|json|name` prints them (`single`: one named
/// object rather than a list).
pub fn format_objects(items: &[Object], output: Output, single: bool) -> String {
    match output {
        Output::Yaml if single && items.len() == 1 => manifest::to_yaml(&items[0]),
        Output::Json if single && items.len() == 1 => format!("{}\n", manifest::to_json(&items[0])),
        Output::Yaml => serde_yaml::to_string(&list_document(items)).unwrap_or_default(),
        Output::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&list_document(items)).unwrap_or_default()
        ),
        Output::Name | Output::Wide => items
            .iter()
            .filter_map(|o| {
                let kind = kind_of(o)?;
                Some(format!("{}/{}\n", printers::qualified(kind), name_of(o)))
            })
            .collect(),
    }
}

/// Prints the rows of a table as they come, keeping the first widths.
struct RowPrinter {
    header: Vec<String>,
    widths: Vec<usize>,
    printed_header: bool,
    output: Option<Output>,
    all_namespaces: bool,
}

impl RowPrinter {
    fn new(kind: Kind, output: Option<Output>, all_namespaces: bool) -> RowPrinter {
        let header = printers::header_for(kind, output == Some(Output::Wide), all_namespaces);
        RowPrinter {
            widths: table::widths(&header, &[]),
            header,
            printed_header: false,
            output,
            all_namespaces,
        }
    }

    fn wide(&self) -> bool {
        self.output == Some(Output::Wide)
    }

    fn rows(&self, items: &[Object], now: SystemTime) -> Vec<Vec<String>> {
        items
            .iter()
            .map(|o| printers::row_for(o, self.wide(), self.all_namespaces, now))
            .collect()
    }

    /// The first batch: a whole table (or the objects in another format).
    fn print_all(&mut self, items: &[Object], single: bool) -> anyhow::Result<()> {
        match self.output {
            None | Some(Output::Wide) => {
                let rows = self.rows(items, SystemTime::now());
                self.widths = table::widths(&self.header, &rows);
                self.printed_header = true;
                out(&table::render(&self.header, &rows))
            }
            Some(o) => out(&format_objects(items, o, single)),
        }
    }

    /// One change seen by a watch.
    fn print_one(&mut self, o: &Object) -> anyhow::Result<()> {
        match self.output {
            None | Some(Output::Wide) => {
                let row = printers::row_for(o, self.wide(), self.all_namespaces, SystemTime::now());
                let mut text = String::new();
                if !self.printed_header {
                    self.widths = table::widths(&self.header, std::slice::from_ref(&row));
                    text.push_str(&table::render_row(&self.header, &self.widths));
                    text.push('\n');
                    self.printed_header = true;
                }
                text.push_str(&table::render_row(&row, &self.widths));
                text.push('\n');
                out(&text)
            }
            Some(Output::Yaml) => out(&format!("---\n{}", manifest::to_yaml(o))),
            Some(Output::Json) => out(&format!("{}\n", manifest::to_json(o))),
            Some(Output::Name) => out(&format_objects(std::slice::from_ref(o), Output::Name, true)),
        }
    }
}

pub async fn get(a: GetArgs) -> anyhow::Result<()> {
    let (kind, names) = kind_and_names(&a.kind, &a.names)?;
    let res = Resources::new(a.client.client()?);
    let all_ns = a.all_namespaces && kind.namespaced() && names.is_empty();
    let ns = if all_ns {
        String::new()
    } else {
        scope_ns(kind, &a.ns.namespace)
    };
    let labels = a.selector.clone().unwrap_or_default();
    let mut fields = a.field_selector.clone().unwrap_or_default();
    if a.watch && names.len() > 1 {
        bail!("watch is only supported on individual resources and resource collections, but {} resources were found", names.len());
    }
    let mut failed = false;
    let mut items = Vec::new();
    let mut rv = String::new();
    if names.is_empty() {
        let (objs, at) = res
            .list(kind, &ns, &labels, &fields)
            .await
            .map_err(sdk_error)?;
        items = objs;
        rv = at;
    } else if a.watch {
        // One named object: list it by name, for a revision to watch from.
        let one = format!("metadata.name={}", names[0]);
        fields = if fields.is_empty() {
            one
        } else {
            format!("{fields},{one}")
        };
        let (objs, at) = res
            .list(kind, &ns, &labels, &fields)
            .await
            .map_err(sdk_error)?;
        if objs.is_empty() {
            return Err(object_error(
                SdkError::NotFound(String::new()),
                kind,
                &names[0],
            ));
        }
        items = objs;
        rv = at;
    } else {
        for n in &names {
            match res.get(kind, &ns, n).await {
                Ok(o) => items.push(o),
                Err(e) => {
                    let stop = unreachable(&e);
                    report(&object_error(e, kind, n));
                    failed = true;
                    if stop {
                        break;
                    }
                }
            }
        }
    }
    if kind == Kind::Event {
        printers::sort_events(&mut items);
    }
    let mut printer = RowPrinter::new(kind, a.output, all_ns);
    let single = names.len() == 1;
    let structured = matches!(a.output, Some(Output::Yaml | Output::Json));
    if !items.is_empty() {
        printer.print_all(&items, single)?;
    } else if names.is_empty() {
        if structured {
            printer.print_all(&items, false)?;
        } else if !a.watch {
            // With -w the header comes with the first change.
            if ns.is_empty() {
                eprintln!("No resources found");
            } else {
                eprintln!("No resources found in {ns} namespace.");
            }
        }
    }
    if !a.watch {
        return finish(failed);
    }
    watch(&res, kind, &ns, &labels, &fields, rv, &mut printer).await
}

/// Print every change after `rv` until Ctrl-C; resume after breaks,
/// relist (silently) when the revision was compacted.
async fn watch(
    res: &Resources,
    kind: Kind,
    ns: &str,
    labels: &str,
    fields: &str,
    mut rv: String,
    printer: &mut RowPrinter,
) -> anyhow::Result<()> {
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let p = ListParams::default().labels(labels).fields(fields);
        let api = res.api(kind, ns);
        let started = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            s = api.watch(&p, &rv) => s,
        };
        match started {
            Ok(stream) => {
                let mut stream = std::pin::pin!(stream);
                loop {
                    let item = tokio::select! {
                        _ = &mut ctrl_c => return Ok(()),
                        i = stream.next() => i,
                    };
                    match item {
                        None => break,
                        Some(Ok(ev)) => {
                            if !ev.resource_version.is_empty() {
                                rv = ev.resource_version.clone();
                            }
                            if ev.r#type == "BOOKMARK" {
                                continue;
                            }
                            let o = <keelson_proto::api::Object as prost::Message>::decode(
                                ev.object.as_slice(),
                            )
                            .map_err(|e| anyhow::anyhow!("decode a watch event: {e}"))?;
                            printer.print_one(&o)?;
                        }
                        Some(Err(e)) => match e {
                            SdkError::Expired(_) => {
                                rv = relist_revision(res, kind, ns, labels, fields).await?;
                                break;
                            }
                            SdkError::Unavailable(_) | SdkError::Other(_) => break,
                            e => return Err(sdk_error(e)),
                        },
                    }
                }
            }
            Err(SdkError::Expired(_)) => {
                rv = relist_revision(res, kind, ns, labels, fields).await?;
            }
            Err(SdkError::Unavailable(_)) => {}
            Err(e) => return Err(sdk_error(e)),
        }
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(WATCH_RESUME_MS)) => {}
        }
    }
}

async fn relist_revision(
    res: &Resources,
    kind: Kind,
    ns: &str,
    labels: &str,
    fields: &str,
) -> anyhow::Result<String> {
    let (_, rv) = res
        .list(kind, ns, labels, fields)
        .await
        .map_err(sdk_error)?;
    Ok(rv)
}

// ---- describe ----

pub async fn describe(a: DescribeArgs) -> anyhow::Result<()> {
    let (kind, names) = kind_and_names(&a.kind, &a.names)?;
    let res = Resources::new(a.client.client()?);
    let ns = scope_ns(kind, &a.ns.namespace);
    let targets: Vec<Object> = if names.is_empty() {
        let (objs, _) = res.list(kind, &ns, "", "").await.map_err(sdk_error)?;
        if objs.is_empty() {
            if ns.is_empty() {
                eprintln!("No resources found");
            } else {
                eprintln!("No resources found in {ns} namespace.");
            }
        }
        objs
    } else {
        let mut v = Vec::new();
        for n in &names {
            v.push(
                res.get(kind, &ns, n)
                    .await
                    .map_err(|e| object_error(e, kind, n))?,
            );
        }
        v
    };
    let mut text = String::new();
    for (i, o) in targets.iter().enumerate() {
        let name = name_of(o);
        let selector = format!(
            "involvedObject.name={name},involvedObject.kind={}",
            kind.name()
        );
        let events: Vec<v1::Event> = match res.list(Kind::Event, &ns, "", &selector).await {
            Ok((evs, _)) => evs.into_iter().filter_map(v1::Event::from_object).collect(),
            Err(e) => {
                eprintln!("warning: events of {} {name:?}: {e}", kind.plural());
                Vec::new()
            }
        };
        if i > 0 {
            text.push_str("\n\n");
        }
        text.push_str(&describe::describe(o, &events, SystemTime::now()));
    }
    out(&text)
}

// ---- apply, create ----

fn read_items(files: &[String], need_name: bool) -> anyhow::Result<Vec<Item>> {
    let mut stdin = || std::io::read_to_string(std::io::stdin());
    let sources = apply::read_sources(files, &mut stdin)?;
    apply::parse_sources(&sources, need_name)
}

/// Create or update one object; the word to print.
async fn apply_one(
    res: &Resources,
    item: &Item,
    default_ns: &str,
) -> Result<&'static str, SdkError> {
    let ns = item.namespace(default_ns);
    let name = item.name();
    for _ in 0..CONFLICT_RETRIES_MAX {
        let current = match res.get(item.kind, &ns, name).await {
            Ok(o) => o,
            Err(SdkError::NotFound(_)) => match res.create(apply::for_create(item, &ns)).await {
                Ok(_) => return Ok("created"),
                // Created meanwhile by someone else: update it.
                Err(SdkError::AlreadyExists(_)) => continue,
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        };
        let desired = apply::for_update(&item.object, &current, &ns);
        if apply::unchanged(&desired, &current) {
            return Ok("unchanged");
        }
        match res.update(desired).await {
            Ok(_) => return Ok("configured"),
            // Changed (or deleted) between the get and the update: again.
            Err(SdkError::Conflict(_) | SdkError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(SdkError::Conflict(format!(
        "{} {name:?}: still changing after {CONFLICT_RETRIES_MAX} tries; try again",
        item.kind.plural()
    )))
}

/// An error about a manifest's object: kubectl's wording for a missing or
/// existing object, else the server's message after the file's name.
fn item_error(e: SdkError, item: &Item) -> anyhow::Error {
    let name = if item.name().is_empty() {
        meta_of(&item.object).map_or("", |m| m.generate_name.as_str())
    } else {
        item.name()
    };
    match e {
        SdkError::NotFound(_) | SdkError::AlreadyExists(_) => object_error(e, item.kind, name),
        e => anyhow!("{}: {:#}", item.source, sdk_error(e)),
    }
}

pub async fn apply(a: ApplyArgs) -> anyhow::Result<()> {
    let items = read_items(&a.files, true)?;
    let res = Resources::new(a.client.client()?);
    let mut failed = false;
    for item in &items {
        match apply_one(&res, item, &a.ns.namespace).await {
            Ok(word) => out(&format!(
                "{} {word}\n",
                printers::slash_name(item.kind, item.name())
            ))?,
            Err(e) => {
                let stop = unreachable(&e);
                report(&item_error(e, item));
                failed = true;
                if stop {
                    break;
                }
            }
        }
    }
    finish(failed)
}

pub async fn create(a: ApplyArgs) -> anyhow::Result<()> {
    let items = read_items(&a.files, false)?;
    let res = Resources::new(a.client.client()?);
    let mut failed = false;
    for item in &items {
        let ns = item.namespace(&a.ns.namespace);
        match res.create(apply::for_create(item, &ns)).await {
            Ok(o) => out(&format!(
                "{} created\n",
                printers::slash_name(item.kind, &name_of(&o))
            ))?,
            Err(e) => {
                let stop = unreachable(&e);
                report(&item_error(e, item));
                failed = true;
                if stop {
                    break;
                }
            }
        }
    }
    finish(failed)
}

// ---- delete ----

pub async fn delete(a: DeleteArgs) -> anyhow::Result<()> {
    let mut targets: Vec<(Kind, String, String)> = Vec::new();
    if !a.files.is_empty() {
        if !a.args.is_empty() {
            bail!("give either -f FILE or TYPE NAME..., not both");
        }
        for item in read_items(&a.files, true)? {
            targets.push((
                item.kind,
                item.namespace(&a.ns.namespace),
                item.name().to_string(),
            ));
        }
    } else {
        let Some((first, rest)) = a.args.split_first() else {
            bail!("give TYPE NAME... or -f FILE");
        };
        let (kind, names) = kind_and_names(first, rest)?;
        if names.is_empty() {
            bail!("resource(s) were provided, but no name was specified");
        }
        let ns = scope_ns(kind, &a.ns.namespace);
        targets.extend(names.into_iter().map(|n| (kind, ns.clone(), n)));
    }
    let res = Resources::new(a.client.client()?);
    let grace = (a.grace_period >= 0).then_some(a.grace_period);
    let policy = match a.cascade {
        Cascade::Background => "Background",
        Cascade::Orphan => "Orphan",
        Cascade::Foreground => "Foreground",
    };
    let mut failed = false;
    for (kind, ns, name) in &targets {
        match res.delete(*kind, ns, name, grace, policy).await {
            Ok(_) => out(&format!(
                "{} {name:?} deleted\n",
                printers::qualified(*kind)
            ))?,
            Err(e) => {
                let stop = unreachable(&e);
                report(&object_error(e, *kind, name));
                failed = true;
                if stop {
                    break;
                }
            }
        }
    }
    finish(failed)
}

// ---- scale ----

async fn scale_typed<K: Resource>(
    client: Client,
    ns: &str,
    name: &str,
    replicas: i32,
    set: impl Fn(&mut K, i32),
) -> anyhow::Result<()> {
    let api: keelson_sdk::Api<K> = keelson_sdk::Api::namespaced(client, ns);
    for _ in 0..CONFLICT_RETRIES_MAX {
        let mut obj = api
            .get(name)
            .await
            .map_err(|e| object_error(e, K::KIND, name))?;
        set(&mut obj, replicas);
        match api.update(&obj).await {
            Ok(_) => return Ok(()),
            Err(SdkError::Conflict(_)) => continue,
            Err(e) => return Err(object_error(e, K::KIND, name)),
        }
    }
    bail!(
        "{} {name:?}: still changing after {CONFLICT_RETRIES_MAX} tries; try again",
        K::KIND.plural()
    )
}

pub async fn scale(a: ScaleArgs) -> anyhow::Result<()> {
    let names: Vec<String> = a.name.iter().cloned().collect();
    let (kind, names) = kind_and_names(&a.kind, &names)?;
    let [name] = names.as_slice() else {
        bail!(
            "give one name: keelson scale {} NAME --replicas N",
            kind.name().to_ascii_lowercase()
        );
    };
    if a.replicas < 0 {
        bail!("--replicas must not be negative");
    }
    let client = a.client.client()?;
    let ns = &a.ns.namespace;
    match kind {
        Kind::Deployment => {
            scale_typed::<v1::Deployment>(client, ns, name, a.replicas, |d, n| {
                d.spec.get_or_insert_with(Default::default).replicas = Some(n);
            })
            .await?
        }
        Kind::ReplicaSet => {
            scale_typed::<v1::ReplicaSet>(client, ns, name, a.replicas, |rs, n| {
                rs.spec.get_or_insert_with(Default::default).replicas = Some(n);
            })
            .await?
        }
        other => bail!(
            "{} cannot be scaled (deployments and replicasets can)",
            other.plural()
        ),
    }
    out(&format!("{}/{name} scaled\n", printers::qualified(kind)))
}

// ---- cluster status, whoami ----

/// The `cluster status` table.
pub fn cluster_table(replicas: &[keelson_proto::api::ReplicaStatus]) -> String {
    let rows: Vec<Vec<String>> = replicas
        .iter()
        .map(|r| {
            let reached = r.error.is_empty();
            let num = |n: String| if reached { n } else { "-".into() };
            vec![
                r.name.clone(),
                r.id.clone(),
                if r.leader { "*".into() } else { String::new() },
                num(r.term.to_string()),
                num(r.commit_index.to_string()),
                num(r.applied_index.to_string()),
                num(r.revision.to_string()),
                num(table::human_bytes(r.db_size_bytes)),
                r.error.clone(),
            ]
        })
        .collect();
    table::render(
        &table::header(&[
            "NAME", "ID", "LEADER", "TERM", "COMMIT", "APPLIED", "REVISION", "DB-SIZE", "ERROR",
        ]),
        &rows,
    )
}

pub async fn cluster(cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Status(c) => {
            let client = c.client()?;
            let res = client
                .call(Retry::Idempotent, |ch| {
                    let r = client.request(ClusterStatusRequest {}, attempt_timeout());
                    async move { ClusterClient::new(ch).status(r).await }
                })
                .await
                .map_err(sdk_error)?
                .into_inner();
            // Who holds the leadership leases (scheduler, controllers).
            let leases: keelson_sdk::Api<keelson_proto::v1::Lease> =
                keelson_sdk::Api::namespaced(client.clone(), "kube-system");
            let holders = match leases.list(&keelson_sdk::ListParams::default()).await {
                Ok(l) => leader_lines(&l.items),
                Err(e) => format!("leases: {e}\n"),
            };
            out(&format!(
                "{}answered by {}\n{holders}",
                cluster_table(&res.replicas),
                res.answered_by
            ))
        }
    }
}

/// One line per leadership lease in kube-system: `keelson-scheduler: s1`.
fn leader_lines(leases: &[keelson_proto::v1::Lease]) -> String {
    leases
        .iter()
        .map(|l| {
            let name = l.metadata.as_ref().map_or("", |m| m.name.as_str());
            let holder = l.spec.as_ref().map_or("", |s| s.holder_identity.as_str());
            format!(
                "{name}: held by {}\n",
                if holder.is_empty() {
                    "<nobody>"
                } else {
                    holder
                }
            )
        })
        .collect()
}

pub async fn whoami(c: ClientArgs) -> anyhow::Result<()> {
    let client = c.client()?;
    let me = client
        .call(Retry::Idempotent, |ch| {
            let r = client.request(WhoAmIRequest {}, attempt_timeout());
            async move { ClusterClient::new(ch).who_am_i(r).await }
        })
        .await
        .map_err(sdk_error)?
        .into_inner();
    out(&format!("{} ({})\n", me.user, me.role))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_lines_name_the_holders() {
        let lease = |name: &str, holder: &str| keelson_proto::v1::Lease {
            metadata: Some(keelson_proto::v1::ObjectMeta {
                name: name.into(),
                ..Default::default()
            }),
            spec: Some(keelson_proto::v1::LeaseSpec {
                holder_identity: holder.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            leader_lines(&[lease("keelson-scheduler", "s1"), lease("x", "")]),
            "keelson-scheduler: held by s1\nx: held by <nobody>\n"
        );
    }

    #[test]
    fn servers_get_a_scheme() {
        assert_eq!(
            parse_servers("127.0.0.1:6443, http://b:1/ ,"),
            vec!["http://127.0.0.1:6443", "http://b:1"]
        );
    }

    #[test]
    fn config_from_flags_without_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope");
        let args = ClientArgs {
            server: Some("a:1,b:2".into()),
            token: Some("t".into()),
            config: Some(missing.clone()),
        };
        let cfg = args.config().expect("config");
        assert_eq!(cfg.endpoints, vec!["http://a:1", "http://b:2"]);
        assert_eq!(cfg.token, "t");
        let no_server = ClientArgs {
            server: None,
            token: None,
            config: Some(missing),
        };
        assert!(no_server.config().is_err());

        let file = dir.path().join("config");
        Config::new(vec!["http://c:3".into()], "filetoken")
            .save(&file)
            .expect("save");
        let over = ClientArgs {
            server: Some("d:4".into()),
            token: None,
            config: Some(file),
        };
        let cfg = over.config().expect("config");
        assert_eq!(cfg.endpoints, vec!["http://d:4"]);
        assert_eq!(cfg.token, "filetoken");
    }

    #[test]
    fn kinds_and_names() {
        let (k, n) = kind_and_names("deploy/web", &[]).expect("ok");
        assert_eq!((k, n), (Kind::Deployment, vec!["web".to_string()]));
        let (k, n) = kind_and_names("po", &["a".into(), "b".into()]).expect("ok");
        assert_eq!((k, n.len()), (Kind::Pod, 2));
        let err = kind_and_names("widgets", &[])
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("widgets"), "{err}");
        let err = object_error(
            SdkError::NotFound("Pod \"x\" not found".into()),
            Kind::Pod,
            "x",
        );
        assert_eq!(err.to_string(), "pods \"x\" not found");
        let err = object_error(
            SdkError::AlreadyExists(String::new()),
            Kind::Deployment,
            "web",
        );
        assert_eq!(err.to_string(), "deployments \"web\" already exists");
    }

    #[test]
    fn structured_output() {
        let objs = manifest::parse(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: x}]}\n",
        )
        .expect("parse");
        let yaml = format_objects(&objs, Output::Yaml, false);
        assert!(
            yaml.starts_with("apiVersion: v1\nkind: List\nitems:\n"),
            "{yaml}"
        );
        let single = format_objects(&objs[..1], Output::Yaml, true);
        assert!(
            single.starts_with("apiVersion: v1\nkind: Namespace\n"),
            "{single}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&format_objects(&objs, Output::Json, false)).expect("json");
        assert_eq!(json["items"][1]["metadata"]["name"], "p");
        assert_eq!(
            format_objects(&objs, Output::Name, false),
            "namespace/a\npod/p\n"
        );
    }

    #[test]
    fn cluster_status_table() {
        let r = |name: &str, leader: bool, error: &str| keelson_proto::api::ReplicaStatus {
            name: name.into(),
            id: "8e9e05c52164694d".into(),
            leader,
            term: 2,
            commit_index: 10,
            applied_index: 10,
            revision: 7,
            db_size_bytes: 20480,
            error: error.into(),
            ..Default::default()
        };
        let t = cluster_table(&[r("a", true, ""), r("b", false, "no answer in time")]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].starts_with("NAME   ID                 LEADER   TERM"),
            "{t}"
        );
        assert!(lines[1].contains("   *        2      10"), "{t}");
        assert!(lines[1].contains("20 KiB"), "{t}");
        assert!(lines[2].ends_with("no answer in time"), "{t}");
    }
}
