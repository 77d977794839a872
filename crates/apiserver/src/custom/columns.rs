//! Server-side tables of custom resources, pure: the Name column, then a
//! CRD version's `additionalPrinterColumns` (an Age column when it has
//! none), each cell the first value its JSONPath finds, typed as the
//! column says (a `date` shown as an age, as kubectl shows it). The
//! JSONPath is Kubernetes' simple subset: `.field`, `['field']`, `[n]`,
//! `[*]` and filters `[?(@.path=="value")]`.

use std::time::SystemTime;

use serde_json::{json, Value};

use super::definition::Column;

/// One step of a path.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    All,
    /// `[?(@.a.b=="x")]`: the elements whose `a.b` equals `x` (or
    /// differs, with `!=`).
    Filter {
        path: Vec<String>,
        value: Value,
        equal: bool,
    },
}

/// A parsed JSONPath.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonPath(Vec<Step>);

fn bad(path: &str) -> String {
    format!("{path:?} is not a simple JSONPath")
}

impl JsonPath {
    /// Parse `path` (`{...}` braces allowed around it).
    pub fn parse(path: &str) -> Result<JsonPath, String> {
        let p = path.trim();
        let p = p
            .strip_prefix('{')
            .and_then(|x| x.strip_suffix('}'))
            .unwrap_or(p);
        let p = p.strip_prefix('$').unwrap_or(p);
        let mut steps = Vec::new();
        let mut rest = p;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                let name = &r[..end];
                if name.is_empty() {
                    return Err(bad(path));
                }
                steps.push(Step::Field(name.to_string()));
                rest = &r[end..];
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = closing(r).ok_or_else(|| bad(path))?;
                let inner = r[..end].trim();
                rest = &r[end + 1..];
                steps.push(bracket(inner).ok_or_else(|| bad(path))?);
            } else {
                return Err(bad(path));
            }
        }
        if steps.is_empty() {
            return Err(bad(path));
        }
        Ok(JsonPath(steps))
    }

    /// Every value the path finds in `v`.
    pub fn find<'a>(&self, v: &'a Value) -> Vec<&'a Value> {
        let mut cur = vec![v];
        for step in &self.0 {
            let mut next = Vec::new();
            for x in cur {
                match step {
                    Step::Field(f) => next.extend(x.get(f.as_str())),
                    Step::Index(i) => next.extend(x.get(*i)),
                    Step::All => match x {
                        Value::Array(a) => next.extend(a.iter()),
                        Value::Object(m) => next.extend(m.values()),
                        _ => {}
                    },
                    Step::Filter { path, value, equal } => {
                        if let Value::Array(a) = x {
                            next.extend(a.iter().filter(|e| {
                                let found = path.iter().try_fold(*e, |acc, f| acc.get(f.as_str()));
                                (found == Some(value)) == *equal
                            }));
                        }
                    }
                }
            }
            cur = next;
        }
        cur
    }
}

/// The index of the `]` that closes a bracket (quotes skipped).
fn closing(s: &str) -> Option<usize> {
    let mut quote = None;
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, ']') if depth == 0 => return Some(i),
            _ => {}
        }
    }
    None
}

fn unquote(s: &str) -> Option<&str> {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
}

fn bracket(inner: &str) -> Option<Step> {
    if inner == "*" {
        return Some(Step::All);
    }
    if let Ok(i) = inner.parse::<usize>() {
        return Some(Step::Index(i));
    }
    if let Some(name) = unquote(inner) {
        return Some(Step::Field(name.to_string()));
    }
    let cond = inner.strip_prefix("?(")?.strip_suffix(')')?.trim();
    let (lhs, rhs, equal) = match cond.split_once("==") {
        Some((l, r)) => (l, r, true),
        None => {
            let (l, r) = cond.split_once("!=")?;
            (l, r, false)
        }
    };
    let field = lhs.trim().strip_prefix("@.")?;
    let path: Vec<String> = field.split('.').map(str::to_string).collect();
    if path.iter().any(String::is_empty) {
        return None;
    }
    let value = match unquote(rhs) {
        Some(s) => Value::String(s.to_string()),
        None => serde_json::from_str(rhs.trim()).ok()?,
    };
    Some(Step::Filter { path, value, equal })
}

/// The columns of a version: its own, or Age when it has none.
pub fn effective(columns: &[Column]) -> Vec<Column> {
    if !columns.is_empty() {
        return columns.to_vec();
    }
    vec![Column {
        name: "Age".into(),
        type_: "date".into(),
        format: String::new(),
        description: String::new(),
        priority: 0,
        json_path: ".metadata.creationTimestamp".into(),
    }]
}

/// `columnDefinitions` of a table: Name, then `columns`.
pub fn definitions(columns: &[Column]) -> Vec<Value> {
    let mut out = vec![json!({
        "name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": "Name must be unique within a namespace.",
    })];
    out.extend(columns.iter().map(|c| {
        json!({
            "name": c.name, "type": c.type_, "format": c.format,
            "description": c.description, "priority": c.priority,
        })
    }));
    out
}

/// A cell: the first value the column's path finds, as its type says
/// (null when there is none or it is of another type).
fn cell(c: &Column, o: &Value, now: SystemTime) -> Value {
    let Ok(path) = JsonPath::parse(&c.json_path) else {
        return Value::Null;
    };
    let Some(v) = path.find(o).into_iter().next() else {
        return Value::Null;
    };
    match c.type_.as_str() {
        "integer" => v.as_i64().map(Value::from).unwrap_or(Value::Null),
        "number" => v.as_f64().map(Value::from).unwrap_or(Value::Null),
        "boolean" => v.as_bool().map(Value::from).unwrap_or(Value::Null),
        "date" => v
            .as_str()
            .map(|ts| Value::from(keelson_model::time::age(ts, now)))
            .unwrap_or(Value::Null),
        _ => match v {
            Value::String(s) => Value::from(s.clone()),
            other => Value::from(other.to_string()),
        },
    }
}

/// One row's cells: the name, then each column's.
pub fn cells(columns: &[Column], o: &Value, now: SystemTime) -> Vec<Value> {
    let mut out = vec![o.pointer("/metadata/name").cloned().unwrap_or(Value::Null)];
    out.extend(columns.iter().map(|c| cell(c, o, now)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn col(name: &str, ty: &str, path: &str) -> Column {
        Column {
            name: name.into(),
            type_: ty.into(),
            format: String::new(),
            description: String::new(),
            priority: 0,
            json_path: path.into(),
        }
    }

    #[test]
    fn paths_parse_and_find() {
        let o = json!({
            "metadata": {"name": "a", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"replicas": 3, "ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53}],
                     "dotted.key": "x"},
            "status": {"conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "Synced", "status": "False"}
            ]}
        });
        let find = |p: &str| -> Vec<Value> {
            JsonPath::parse(p)
                .map(|jp| jp.find(&o).into_iter().cloned().collect())
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(find(".spec.replicas"), vec![json!(3)]);
        assert_eq!(find("{.spec.ports[1].port}"), vec![json!(53)]);
        assert_eq!(
            find(".spec.ports[*].name"),
            vec![json!("http"), json!("dns")]
        );
        assert_eq!(
            find(".status.conditions[?(@.type==\"Ready\")].status"),
            vec![json!("True")]
        );
        assert_eq!(
            find(".status.conditions[?(@.type=='Synced')].status"),
            vec![json!("False")]
        );
        assert_eq!(
            find(".status.conditions[?(@.type!=\"Ready\")].type"),
            vec![json!("Synced")]
        );
        assert_eq!(find(".spec['dotted.key']"), vec![json!("x")]);
        assert_eq!(find(".spec.missing"), Vec::<Value>::new());
        for bad in ["", "spec", ".spec..x", ".spec[", ".spec[?(@type==1)]"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cells_are_typed_by_their_column() {
        let o = json!({
            "metadata": {"name": "a", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"replicas": 3, "image": "busybox", "on": true, "ratio": 0.5, "obj": {"k": 1}}
        });
        let now = keelson_model::time::parse_rfc3339("2026-01-01T00:05:00Z")
            .unwrap_or(SystemTime::UNIX_EPOCH)
            + Duration::from_secs(0);
        let cols = vec![
            col("Replicas", "integer", ".spec.replicas"),
            col("Image", "string", ".spec.image"),
            col("On", "boolean", ".spec.on"),
            col("Ratio", "number", ".spec.ratio"),
            col("Obj", "string", ".spec.obj"),
            col("Wrong", "integer", ".spec.image"),
            col("Missing", "string", ".status.x"),
            col("Age", "date", ".metadata.creationTimestamp"),
        ];
        assert_eq!(
            cells(&cols, &o, now),
            vec![
                json!("a"),
                json!(3),
                json!("busybox"),
                json!(true),
                json!(0.5),
                json!("{\"k\":1}"),
                Value::Null,
                Value::Null,
                json!("5m")
            ]
        );
        let defs = definitions(&effective(&[]));
        assert_eq!(defs[0]["name"], "Name");
        assert_eq!(defs[1]["name"], "Age");
        assert_eq!(defs[1]["type"], "date");
    }
}
