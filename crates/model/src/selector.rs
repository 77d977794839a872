//! Label selectors (`app=web,tier!=db,env in (a,b),!canary`) and field
//! selectors (`spec.nodeName=n1,status.phase!=Running`), parsed once and
//! matched against objects, as Kubernetes does.

use std::collections::BTreeMap;

use keelson_proto::api::{object, Object};
use keelson_proto::v1;

use crate::kinds::meta_of;

/// A label selector: every requirement must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    reqs: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::Eq(k, v) => labels.get(k) == Some(v),
            // Kubernetes: `!=` also matches objects without the label.
            Requirement::NotEq(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|x| vs.contains(x)),
            Requirement::NotIn(k, vs) => !labels.get(k).is_some_and(|x| vs.contains(x)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
        }
    }
}

impl LabelSelector {
    /// Parse kubectl's `-l` syntax. Empty selects everything.
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        for term in split_top_level(s)? {
            let term = term.trim();
            if term.is_empty() {
                return Err(format!("label selector {s:?}: empty requirement"));
            }
            reqs.push(parse_requirement(term).map_err(|e| format!("label selector {s:?}: {e}"))?);
        }
        Ok(LabelSelector { reqs })
    }

    /// From a resource's `selector` (matchLabels and matchExpressions).
    pub fn from_proto(sel: &v1::LabelSelector) -> Result<LabelSelector, String> {
        let mut reqs: Vec<Requirement> = sel
            .match_labels
            .iter()
            .map(|(k, v)| Requirement::Eq(k.clone(), v.clone()))
            .collect();
        for e in &sel.match_expressions {
            let k = e.key.clone();
            reqs.push(match e.operator.as_str() {
                "In" => Requirement::In(k, e.values.clone()),
                "NotIn" => Requirement::NotIn(k, e.values.clone()),
                "Exists" => Requirement::Exists(k),
                "DoesNotExist" => Requirement::NotExists(k),
                op => return Err(format!("unknown selector operator {op:?}")),
            });
        }
        Ok(LabelSelector { reqs })
    }

    /// A selector of plain `key=value` pairs (a Service's selector).
    pub fn from_map(m: &BTreeMap<String, String>) -> LabelSelector {
        LabelSelector {
            reqs: m
                .iter()
                .map(|(k, v)| Requirement::Eq(k.clone(), v.clone()))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.reqs.iter().all(|r| r.matches(labels))
    }
}

/// Split on commas outside parentheses.
fn split_top_level(s: &str) -> Result<Vec<&str>, String> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("label selector {s:?}: unbalanced ')'"));
                }
            }
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("label selector {s:?}: unbalanced '('"));
    }
    out.push(&s[start..]);
    Ok(out)
}

fn parse_requirement(t: &str) -> Result<Requirement, String> {
    if let Some(k) = t.strip_prefix('!') {
        return Ok(Requirement::NotExists(key(k)?));
    }
    if let Some((k, v)) = t.split_once("!=") {
        return Ok(Requirement::NotEq(key(k)?, value(v)?));
    }
    if let Some((k, v)) = t.split_once("==") {
        return Ok(Requirement::Eq(key(k)?, value(v)?));
    }
    if let Some((k, v)) = t.split_once('=') {
        return Ok(Requirement::Eq(key(k)?, value(v)?));
    }
    // `key in (a,b)` / `key notin (a,b)` / `key`
    let mut words = t.splitn(2, char::is_whitespace);
    let k = key(words.next().unwrap_or(""))?;
    let Some(rest) = words.next().map(str::trim) else {
        return Ok(Requirement::Exists(k));
    };
    let (op, list) = if let Some(l) = rest.strip_prefix("notin") {
        ("notin", l)
    } else if let Some(l) = rest.strip_prefix("in") {
        ("in", l)
    } else {
        return Err(format!("{t:?}: expected =, ==, !=, in or notin"));
    };
    let list = list.trim();
    let inner = list
        .strip_prefix('(')
        .and_then(|l| l.strip_suffix(')'))
        .ok_or_else(|| format!("{t:?}: values must be in parentheses"))?;
    let values = inner.split(',').map(value).collect::<Result<Vec<_>, _>>()?;
    if values.iter().all(String::is_empty) {
        return Err(format!("{t:?}: {op} needs at least one value"));
    }
    Ok(if op == "in" {
        Requirement::In(k, values)
    } else {
        Requirement::NotIn(k, values)
    })
}

fn key(k: &str) -> Result<String, String> {
    let k = k.trim();
    let ok = !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(k.to_string())
    } else {
        Err(format!("invalid label key {k:?}"))
    }
}

fn value(v: &str) -> Result<String, String> {
    let v = v.trim();
    let ok = v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!("invalid label value {v:?}"))
    }
}

/// A field selector: `field=value`, `field==value`, `field!=value`, joined
/// by commas, over the fields each kind supports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    reqs: Vec<(String, bool, String)>,
}

/// The fields a field selector may name, per kind (plus metadata.name and
/// metadata.namespace for every kind).
pub fn supported_fields(kind: crate::Kind) -> &'static [&'static str] {
    use crate::Kind;
    match kind {
        Kind::Pod => &["spec.nodeName", "status.phase", "spec.restartPolicy"],
        Kind::Node => &["spec.unschedulable"],
        Kind::Event => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "type",
            "source",
        ],
        Kind::Namespace => &["status.phase"],
        Kind::Secret => &["type"],
        _ => &[],
    }
}

impl FieldSelector {
    /// Parse for `kind`; a field the kind does not support is an error.
    pub fn parse(s: &str, kind: crate::Kind) -> Result<FieldSelector, String> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector { reqs });
        }
        for term in s.split(',') {
            let term = term.trim();
            let (f, eq, v) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!(
                    "field selector {s:?}: {term:?} is not field=value or field!=value"
                ));
            };
            let f = f.trim();
            let supported = matches!(f, "metadata.name" | "metadata.namespace")
                || supported_fields(kind).contains(&f);
            if !supported {
                return Err(format!(
                    "field selector {s:?}: field {f:?} is not supported for {} (supported: metadata.name, metadata.namespace{})",
                    kind.plural(),
                    supported_fields(kind)
                        .iter()
                        .map(|f| format!(", {f}"))
                        .collect::<String>()
                ));
            }
            reqs.push((f.to_string(), eq, v.trim().to_string()));
        }
        Ok(FieldSelector { reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// The value this selector requires for `field`, if it pins one
    /// (`spec.nodeName=n1`): lets a list narrow its scan.
    pub fn required(&self, field: &str) -> Option<&str> {
        self.reqs
            .iter()
            .find(|(f, eq, _)| f == field && *eq)
            .map(|(_, _, v)| v.as_str())
    }

    pub fn matches(&self, o: &Object) -> bool {
        self.reqs.iter().all(|(f, eq, v)| {
            let actual = field_value(o, f).unwrap_or_default();
            (actual == *v) == *eq
        })
    }
}

/// The value of a selectable field of an object ("" when unset).
pub fn field_value(o: &Object, field: &str) -> Option<String> {
    let meta = meta_of(o);
    match field {
        "metadata.name" => return meta.map(|m| m.name.clone()),
        "metadata.namespace" => return meta.map(|m| m.namespace.clone()),
        _ => {}
    }
    match o.kind.as_ref()? {
        object::Kind::Pod(p) => match field {
            "spec.nodeName" => p.spec.as_ref().map(|s| s.node_name.clone()),
            "spec.restartPolicy" => p.spec.as_ref().map(|s| s.restart_policy.clone()),
            "status.phase" => p.status.as_ref().map(|s| s.phase.clone()),
            _ => None,
        },
        object::Kind::Node(n) => match field {
            "spec.unschedulable" => Some(
                n.spec
                    .as_ref()
                    .map(|s| s.unschedulable)
                    .unwrap_or(false)
                    .to_string(),
            ),
            _ => None,
        },
        object::Kind::Namespace(n) => match field {
            "status.phase" => n.status.as_ref().map(|s| s.phase.clone()),
            _ => None,
        },
        object::Kind::Event(e) => {
            let r = e.involved_object.clone().unwrap_or_default();
            match field {
                "involvedObject.kind" => Some(r.kind),
                "involvedObject.namespace" => Some(r.namespace),
                "involvedObject.name" => Some(r.name),
                "involvedObject.uid" => Some(r.uid),
                "involvedObject.apiVersion" => Some(r.api_version),
                "involvedObject.resourceVersion" => Some(r.resource_version),
                "involvedObject.fieldPath" => Some(r.field_path),
                "reason" => Some(e.reason.clone()),
                "type" => Some(e.r#type.clone()),
                "source" => e.source.as_ref().map(|s| s.component.clone()),
                _ => None,
            }
        }
        object::Kind::Secret(s) if field == "type" => Some(s.r#type.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Kind, Resource};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selector_table() {
        let web = labels(&[("app", "web"), ("tier", "front"), ("env", "prod")]);
        let bare = labels(&[]);
        let cases: &[(&str, bool, bool)] = &[
            // selector, matches web, matches bare
            ("", true, true),
            ("app=web", true, false),
            ("app==web", true, false),
            ("app = web", true, false),
            ("app!=web", false, true),
            ("app!=db", true, true),
            ("app=web,tier=front", true, false),
            ("app=web,tier=back", false, false),
            ("env in (prod,staging)", true, false),
            ("env in (staging)", false, false),
            ("env notin (staging)", true, true),
            ("env notin (prod, staging)", false, true),
            ("app", true, false),
            ("!app", false, true),
            ("!canary", true, true),
            ("app=web,env in (prod),!canary", true, false),
            ("example.com/team=x", false, false),
        ];
        for (sel, m_web, m_bare) in cases {
            let s = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches(&web), *m_web, "{sel} on web");
            assert_eq!(s.matches(&bare), *m_bare, "{sel} on bare");
        }
    }

    #[test]
    fn bad_label_selectors_are_errors() {
        for sel in [
            "app=web,",
            "env in prod",
            "env in ()",
            "env in (a",
            "a b c",
            "app=we b",
            "=x",
            "env foo (a)",
        ] {
            assert!(LabelSelector::parse(sel).is_err(), "{sel:?} should fail");
        }
    }

    #[test]
    fn selector_from_proto() {
        let sel = v1::LabelSelector {
            match_labels: labels(&[("app", "web")]),
            match_expressions: vec![v1::LabelSelectorRequirement {
                key: "env".into(),
                operator: "NotIn".into(),
                values: vec!["dev".into()],
            }],
        };
        let s = LabelSelector::from_proto(&sel).expect("valid");
        assert!(s.matches(&labels(&[("app", "web"), ("env", "prod")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("env", "dev")])));
        assert!(!s.matches(&labels(&[("env", "prod")])));
    }

    fn pod(name: &str, node: &str, phase: &str) -> Object {
        v1::Pod {
            metadata: Some(v1::ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            spec: Some(v1::PodSpec {
                node_name: node.into(),
                ..Default::default()
            }),
            status: Some(v1::PodStatus {
                phase: phase.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .into_object()
    }

    #[test]
    fn field_selector_table() {
        let a = pod("a", "n1", "Running");
        let b = pod("b", "", "Pending");
        let cases: &[(&str, bool, bool)] = &[
            ("", true, true),
            ("metadata.name=a", true, false),
            ("metadata.namespace=default", true, true),
            ("spec.nodeName=n1", true, false),
            ("spec.nodeName=", false, true),
            ("spec.nodeName!=", true, false),
            ("status.phase!=Running", false, true),
            ("status.phase==Pending,metadata.name=b", false, true),
        ];
        for (sel, ma, mb) in cases {
            let s = FieldSelector::parse(sel, Kind::Pod).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches(&a), *ma, "{sel} on a");
            assert_eq!(s.matches(&b), *mb, "{sel} on b");
        }
        let s = FieldSelector::parse("spec.nodeName=n1", Kind::Pod).expect("valid");
        assert_eq!(s.required("spec.nodeName"), Some("n1"));
        let err = FieldSelector::parse("spec.foo=1", Kind::Pod).expect_err("unsupported");
        assert!(err.contains("spec.foo"), "{err}");
        assert!(FieldSelector::parse("spec.nodeName=n1", Kind::Service).is_err());
        assert!(FieldSelector::parse("nonsense", Kind::Pod).is_err());
    }

    #[test]
    fn event_fields() {
        let e = v1::Event {
            metadata: Some(v1::ObjectMeta {
                name: "e1".into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            involved_object: Some(v1::ObjectReference {
                kind: "Pod".into(),
                name: "web-1".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .into_object();
        let s = FieldSelector::parse(
            "involvedObject.kind=Pod,involvedObject.name=web-1",
            Kind::Event,
        )
        .expect("valid");
        assert!(s.matches(&e));
        let s = FieldSelector::parse("involvedObject.name=web-2", Kind::Event).expect("valid");
        assert!(!s.matches(&e));
    }
}
