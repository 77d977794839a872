//! The verdicts over a run's history and the report printed after it.

use std::time::Duration;

use crate::history::Op;
use crate::invariants::{self, Verdict, Watched};
use crate::linearizability;

use super::controlplane::CpRecord;
use super::faults::Fault;
use super::kv::WATCHERS;

/// States the linearizability search may visit per key.
const SEARCH_BUDGET: usize = 5_000_000;

/// Every verdict over the history.
pub fn judge(ops: &[Op], watched: &[Watched], complete: &[usize]) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    let mut bad = Vec::new();
    let mut unknown = Vec::new();
    let mut by_key: std::collections::BTreeMap<&str, Vec<&Op>> = Default::default();
    for op in ops {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let keys = by_key.len();
    let largest = by_key.values().map(Vec::len).max().unwrap_or(0);
    for (key, of_key) in &by_key {
        match linearizability::check(&None, of_key, SEARCH_BUDGET) {
            Some(true) => {}
            Some(false) => bad.push(format!("{key} ({} operations)", of_key.len())),
            None => unknown.push(key.to_string()),
        }
    }
    verdicts.push(Verdict {
        name: "linearizable per key".into(),
        ok: bad.is_empty(),
        detail: if bad.is_empty() {
            format!(
                "{keys} keys, up to {largest} operations each{}",
                if unknown.is_empty() {
                    String::new()
                } else {
                    format!("; search budget ran out for {unknown:?} (not judged)")
                }
            )
        } else {
            format!(
                "not linearizable: {} of {keys} keys: {}{}",
                bad.len(),
                bad.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
                if bad.len() > 5 { ", ..." } else { "" }
            )
        },
    });
    verdicts.push(Verdict {
        name: "every watcher saw the whole run".into(),
        ok: complete.len() == WATCHERS,
        detail: format!("{} of {WATCHERS} complete", complete.len()),
    });
    verdicts.push(invariants::watch_gap_free(ops, watched, complete));
    verdicts.push(invariants::watch_ordered(watched));
    verdicts.push(invariants::revisions_monotonic(ops));
    verdicts
}

pub fn print_control_plane(
    rec: &CpRecord,
    took: &std::collections::BTreeMap<String, Option<Duration>>,
    others: &std::collections::BTreeMap<String, Option<Duration>>,
) {
    let writes = rec.writes.lock().map(|w| w.clone()).unwrap_or_default();
    let acked = writes.iter().filter(|w| w.acked == Some(true)).count();
    let unknown = writes.iter().filter(|w| w.acked.is_none()).count();
    let pods: std::collections::BTreeSet<String> = rec
        .pods
        .lock()
        .map(|p| p.iter().map(|p| p.uid.clone()).collect())
        .unwrap_or_default();
    println!(
        "\ncontrol plane: {} spec changes ({} scales, {} rollouts; acknowledged {acked}, unknown {unknown}), {} pods seen",
        writes.len(),
        rec.scaled.load(std::sync::atomic::Ordering::Relaxed),
        rec.rolled.load(std::sync::atomic::Ordering::Relaxed),
        pods.len()
    );
    println!(
        "  the StatefulSet changed {} times; {} Jobs created",
        rec.set_changes.load(std::sync::atomic::Ordering::Relaxed),
        rec.jobs.lock().map(|j| j.len()).unwrap_or(0)
    );
    for (d, t) in took.iter().chain(others) {
        match t {
            Some(t) => println!(
                "  {d}: at its desired state {:.1} s after the faults",
                t.as_secs_f64()
            ),
            None => println!("  {d}: NOT at its desired state"),
        }
    }
}

pub fn print_report(
    faults: &[Fault],
    ops: &[Op],
    verdicts: &[Verdict],
    offset: Duration,
    run: Duration,
) {
    println!("\nfaults injected: {}", faults.len());
    for f in faults {
        println!(
            "  {:>6.1}s  {} ({:.1}s)",
            f.at.as_secs_f64(),
            f.what,
            f.lasted.as_secs_f64()
        );
    }
    let count = |label: &str| ops.iter().filter(|o| o.outcome.label() == label).count();
    println!(
        "\noperations: {} (ok {}, failed {}, indeterminate {})",
        ops.len(),
        count("ok"),
        count("failed"),
        count("indeterminate")
    );
    // Availability: successful operations per second of the run.
    let secs = run.as_secs().max(1) as usize;
    let mut ok = vec![0usize; secs + 1];
    let mut err = vec![0usize; secs + 1];
    for o in ops {
        let t = Duration::from_nanos(o.invoke_ns)
            .saturating_sub(offset)
            .as_secs() as usize;
        if t > secs {
            continue;
        }
        if o.outcome.label() == "ok" {
            ok[t] += 1;
        } else {
            err[t] += 1;
        }
    }
    println!("\navailability (ok/not ok operations per second):");
    for (chunk_start, (oks, errs)) in ok.chunks(10).zip(err.chunks(10)).enumerate() {
        let cells: Vec<String> = oks
            .iter()
            .zip(errs)
            .map(|(o, e)| format!("{o:>4}/{e:<3}"))
            .collect();
        println!("  {:>4}s {}", chunk_start * 10, cells.join(" "));
    }
    println!("\ninvariants:");
    for v in verdicts {
        println!(
            "  [{}] {}: {}",
            if v.ok { "ok" } else { "VIOLATED" },
            v.name,
            v.detail
        );
    }
}
