//! How `pactown job` shows jobs to people: live progress, a job's table, the list, the timeline.

use std::fmt::Write;
use std::time::Duration;

use super::Term;

fn s<'a>(v: &'a serde_json::Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

fn ms(v: &serde_json::Value) -> String {
    v["ms"]
        .as_f64()
        .map(|m| format!(" in {m:.1} ms"))
        .unwrap_or_default()
}

fn short(v: &serde_json::Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 120 {
        format!("{}…", text.chars().take(120).collect::<String>())
    } else {
        text
    }
}

/// A journal entry as a line of live progress (none for entries people need not see).
pub fn progress_line(e: &serde_json::Value, elapsed: Duration, term: &Term) -> Option<String> {
    let at = term.dim(&format!("{:>7.3}s", elapsed.as_secs_f64()));
    let task = s(e, "task");
    let attempt = e["attempt"].as_u64().unwrap_or(1);
    let d = &e["detail"];
    let line = match s(e, "event") {
        "step-started" => term.bold(&format!("step {}", s(e, "step"))),
        "step-skipped" => format!("step {} skipped (enabled: false)", s(e, "step")),
        "task-skipped" => format!("  - {task} skipped (enabled: false)"),
        "task-started" if attempt > 1 => format!("  … {task} attempt {attempt}"),
        "task-started" => format!(
            "  … {task} → {} {} {}",
            s(d, "service"),
            s(d, "method"),
            s(d, "path")
        ),
        "task-succeeded" => format!("  {} {task}{}", term.colored("32", "✓"), ms(e)),
        "task-failed" if d["final"] == true => format!(
            "  {} {task}{}: {}",
            term.colored("31", "✗"),
            ms(e),
            s(d, "error")
        ),
        "task-failed" => format!(
            "  {} {task}{}: {} (will retry)",
            term.colored("33", "!"),
            ms(e),
            s(d, "error")
        ),
        "revert-started" if attempt == 1 => format!(
            "  ↶ reverting {task} → {} {}",
            s(d, "service"),
            s(d, "path")
        ),
        "task-reverted" => format!("  {} {task} undone{}", term.colored("32", "↶"), ms(e)),
        "revert-failed" => format!(
            "  {} {task} not undone{}: {}",
            term.colored("31", "✗"),
            ms(e),
            s(d, "error")
        ),
        "job-reverting" => term.bold("reverting the finished tasks, last first"),
        _ => return None,
    };
    Some(format!("{at} {line}"))
}

/// A job, step by step and task by task.
pub fn table(job: &serde_json::Value, term: &Term) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} {}",
        term.bold(s(job, "id")),
        s(job, "name"),
        s(job, "status")
    );
    if let Some(e) = job["error"].as_str() {
        let _ = writeln!(out, "  {e}");
    }
    let _ = writeln!(out, "  document: {}", s(job, "state"));
    for step in job["steps"].as_array().into_iter().flatten() {
        let off = if step["enabled"] == false {
            " (disabled)"
        } else {
            ""
        };
        let _ = writeln!(out, "  step {}{off}", s(step, "name"));
        for t in step["tasks"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "    {:<20} {:<14} {:<13} attempts {}",
                s(t, "name"),
                s(t, "service"),
                s(t, "status"),
                t["attempts"]
            );
        }
    }
    out
}

/// Every job, a line each.
pub fn list(jobs: &serde_json::Value) -> String {
    let mut out = format!(
        "{:<22} {:<16} {:<14} {}\n",
        "ID", "NAME", "STATUS", "SUBMITTED"
    );
    for j in jobs["jobs"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:<22} {:<16} {:<14} {}",
            s(j, "id"),
            s(j, "name"),
            s(j, "status"),
            s(j, "created_at")
        );
    }
    out
}

/// A journal entry as a line of the audit timeline.
pub fn timeline_line(e: &serde_json::Value) -> String {
    let mut line = format!("{} {:>3} {:<15}", s(e, "at"), e["seq"], s(e, "event"));
    let who = [s(e, "step"), s(e, "task")]
        .into_iter()
        .filter(|x| !x.is_empty())
        .collect::<Vec<_>>()
        .join("/");
    if !who.is_empty() {
        let _ = write!(line, " {who}");
    }
    if let Some(a) = e["attempt"].as_u64() {
        let _ = write!(line, " #{a}");
    }
    line.push_str(&ms(e));
    let d = &e["detail"];
    if d["service"].is_string() {
        let _ = write!(
            line,
            " {} {} {} {}",
            s(d, "service"),
            s(d, "method"),
            s(d, "path"),
            short(&d["body"])
        );
    } else if !d["result"].is_null() {
        let _ = write!(line, " → {}", short(&d["result"]));
    } else if let Some(err) = d["error"].as_str() {
        let _ = write!(line, " {err}");
    }
    line
}
