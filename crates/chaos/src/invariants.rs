//! The checks besides linearizability: watch streams ordered, unique and
//! gap-free (every acknowledged write seen, with its value, nothing
//! invented), and revisions that never go backwards for a client.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::history::{Op, OpKind, Outcome};

/// One event a watcher received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watched {
    /// Which watcher (streams are checked one by one).
    pub watcher: usize,
    pub revision: i64,
    pub key: String,
    /// None: a deletion.
    pub value: Option<String>,
}

/// An invariant's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

impl Verdict {
    pub(crate) fn new(name: &str, problems: Vec<String>, fine: String) -> Verdict {
        Verdict {
            name: name.into(),
            ok: problems.is_empty(),
            detail: if problems.is_empty() {
                fine
            } else {
                let n = problems.len();
                let mut d: Vec<String> = problems.into_iter().take(5).collect();
                if n > 5 {
                    d.push(format!("... {} more", n - 5));
                }
                d.join("; ")
            },
        }
    }
}

/// Each watcher's events come in revision order, each (revision, key) once.
pub fn watch_ordered(events: &[Watched]) -> Verdict {
    let mut by_watcher: BTreeMap<usize, Vec<&Watched>> = BTreeMap::new();
    for e in events {
        by_watcher.entry(e.watcher).or_default().push(e);
    }
    let mut problems = Vec::new();
    for (w, evs) in &by_watcher {
        let mut seen: HashSet<(i64, &str)> = HashSet::new();
        let mut last = 0i64;
        for e in evs {
            if e.revision < last {
                problems.push(format!("watcher {w}: revision {} after {last}", e.revision));
            }
            if !seen.insert((e.revision, e.key.as_str())) {
                problems.push(format!(
                    "watcher {w}: {} at revision {} twice",
                    e.key, e.revision
                ));
            }
            last = last.max(e.revision);
        }
    }
    Verdict::new(
        "watch streams ordered and without duplicates",
        problems,
        format!("{} watcher(s), {} events", by_watcher.len(), events.len()),
    )
}

/// Every acknowledged write (with the revision its answer carried) is in
/// each complete watch stream with its value; every watched value was
/// written by someone (acknowledged or not). `complete` lists the watchers
/// that watched the whole run.
pub fn watch_gap_free(ops: &[Op], events: &[Watched], complete: &[usize]) -> Verdict {
    let acked: Vec<(i64, &str, &str)> = ops
        .iter()
        .filter_map(|op| match (&op.kind, &op.outcome) {
            (OpKind::Write { value }, Outcome::Ok) if op.revision > 0 => {
                Some((op.revision, op.key.as_str(), value.as_str()))
            }
            (OpKind::Cas { new, .. }, Outcome::Swapped(true)) if op.revision > 0 => {
                Some((op.revision, op.key.as_str(), new.as_str()))
            }
            _ => None,
        })
        .collect();
    let written: HashSet<&str> = ops
        .iter()
        .filter_map(|op| match &op.kind {
            OpKind::Write { value } => Some(value.as_str()),
            OpKind::Cas { new, .. } => Some(new.as_str()),
            OpKind::Read => None,
        })
        .collect();
    let mut problems = Vec::new();
    for w in complete {
        let got: HashMap<(i64, &str), Option<&str>> = events
            .iter()
            .filter(|e| e.watcher == *w)
            .map(|e| ((e.revision, e.key.as_str()), e.value.as_deref()))
            .collect();
        for (rev, key, value) in &acked {
            match got.get(&(*rev, *key)) {
                Some(Some(v)) if v == value => {}
                Some(other) => problems.push(format!(
                    "watcher {w}: {key}@{rev} is {other:?}, the write said {value:?}"
                )),
                None => problems.push(format!(
                    "watcher {w}: acknowledged write {key}={value}@{rev} never seen"
                )),
            }
        }
    }
    for e in events {
        if let Some(v) = &e.value {
            if !written.contains(v.as_str()) {
                problems.push(format!(
                    "watcher {}: {}={v}@{} was never written",
                    e.watcher, e.key, e.revision
                ));
            }
        }
    }
    Verdict::new(
        "no acknowledged write lost; watch streams gap-free",
        problems,
        format!(
            "{} acknowledged writes, each seen by {} complete watcher(s)",
            acked.len(),
            complete.len()
        ),
    )
}

/// A client never sees the store's revision go backwards (each client runs
/// one operation at a time; answers' revisions in invocation order).
pub fn revisions_monotonic(ops: &[Op]) -> Verdict {
    let mut by_client: BTreeMap<usize, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        if op.revision > 0 && op.complete_ns.is_some() {
            by_client.entry(op.client).or_default().push(op);
        }
    }
    let mut problems = Vec::new();
    let mut checked = 0usize;
    for (c, mut list) in by_client {
        list.sort_by_key(|o| o.invoke_ns);
        let mut last = 0i64;
        for op in list {
            checked += 1;
            if op.revision < last {
                problems.push(format!(
                    "client {c}: revision {} after {last} ({:?} on {})",
                    op.revision, op.kind, op.key
                ));
            }
            last = last.max(op.revision);
        }
    }
    Verdict::new(
        "revisions never go backwards",
        problems,
        format!("{checked} answers"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(client: usize, key: &str, v: &str, rev: i64, outcome: Outcome) -> Op {
        Op {
            client,
            key: key.into(),
            kind: OpKind::Write { value: v.into() },
            invoke_ns: rev as u64 * 10,
            complete_ns: Some(rev as u64 * 10 + 5),
            outcome,
            revision: rev,
        }
    }
    fn ev(w: usize, rev: i64, key: &str, v: &str) -> Watched {
        Watched {
            watcher: w,
            revision: rev,
            key: key.into(),
            value: Some(v.into()),
        }
    }

    #[test]
    fn ordered_watch() {
        assert!(watch_ordered(&[ev(0, 1, "a", "x"), ev(0, 2, "b", "y")]).ok);
        assert!(!watch_ordered(&[ev(0, 2, "a", "x"), ev(0, 1, "b", "y")]).ok);
        assert!(!watch_ordered(&[ev(0, 2, "a", "x"), ev(0, 2, "a", "x")]).ok);
        // Two watchers are independent.
        assert!(watch_ordered(&[ev(0, 2, "a", "x"), ev(1, 1, "a", "w")]).ok);
    }

    #[test]
    fn gap_free_and_nothing_invented() {
        let ops = vec![
            write(0, "a", "x", 1, Outcome::Ok),
            write(1, "b", "y", 2, Outcome::Ok),
            write(2, "a", "z", 0, Outcome::Unknown),
        ];
        let all = vec![ev(0, 1, "a", "x"), ev(0, 2, "b", "y"), ev(0, 3, "a", "z")];
        assert!(watch_gap_free(&ops, &all, &[0]).ok);
        // An acknowledged write missing from the stream.
        let v = watch_gap_free(&ops, &all[..1], &[0]);
        assert!(!v.ok && v.detail.contains("never seen"), "{v:?}");
        // A value no one wrote.
        let mut bad = all.clone();
        bad.push(ev(0, 4, "a", "ghost"));
        assert!(!watch_gap_free(&ops, &bad, &[0]).ok);
        // A watcher that did not watch the whole run only has to be sane.
        assert!(watch_gap_free(&ops, &all[..1], &[]).ok);
    }

    #[test]
    fn monotonic_revisions() {
        let ops = vec![
            write(0, "a", "x", 5, Outcome::Ok),
            write(0, "a", "y", 7, Outcome::Ok),
        ];
        assert!(revisions_monotonic(&ops).ok);
        let mut back = ops.clone();
        back[1].revision = 3;
        assert!(!revisions_monotonic(&back).ok);
    }
}
