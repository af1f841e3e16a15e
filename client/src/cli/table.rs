//! Tables: the columns of each kind (like `kubectl get`), ages, and
//! aligned output a page at a time.

use chrono::{DateTime, Utc};

use crate::types::{ContainerInstance, Entity, Item, Service, Task};

/// Table columns of an entity, like `kubectl get`.
pub trait Row: Entity {
    fn header(wide: bool) -> Vec<&'static str>;
    fn row(item: &Item<Self>, wide: bool, now: DateTime<Utc>) -> Vec<String>;
}

/// The last segment of an ARN (`.../cluster/id` -> `id`).
fn short(arn: &str) -> String {
    arn.rsplit(['/', ':']).next().unwrap_or(arn).to_string()
}

/// A task definition as `family:revision` (what follows the ARN's `/`).
fn task_definition(arn: Option<&str>) -> String {
    arn.map_or("-".into(), |a| {
        a.rsplit('/').next().unwrap_or(a).to_string()
    })
}

/// The account and Region of an ARN (`arn:aws:ecs:REGION:ACCOUNT:...`).
fn place(arn: &str) -> [String; 2] {
    let f: Vec<&str> = arn.split(':').collect();
    let at = |i: usize| {
        f.get(i)
            .filter(|v| !v.is_empty())
            .map_or("-".to_string(), |v| v.to_string())
    };
    [at(4), at(3)]
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "-".into())
}

/// kubectl's age: 45s, 12m, 3h, 5d.
fn age(ts: Option<&str>, now: DateTime<Utc>) -> String {
    let Some(t) = ts.and_then(|t| DateTime::parse_from_rfc3339(t).ok()) else {
        return "-".into();
    };
    let s = (now - t.with_timezone(&Utc)).num_seconds().max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

impl Row for Task {
    fn header(wide: bool) -> Vec<&'static str> {
        let mut h = vec![
            "CLUSTER", "TASK", "LAST", "DESIRED", "GROUP", "LAUNCH", "AGE",
        ];
        if wide {
            h.extend([
                "ACCOUNT",
                "REGION",
                "TASK DEFINITION",
                "INSTANCE",
                "VERSION",
            ]);
        }
        h
    }
    fn row(item: &Item<Self>, wide: bool, now: DateTime<Utc>) -> Vec<String> {
        let t = &item.entity;
        let mut r = vec![
            short(&t.cluster_arn),
            short(&t.task_arn),
            opt(&t.last_status),
            opt(&t.desired_status),
            opt(&t.group),
            opt(&t.launch_type),
            age(t.created_at.as_deref(), now),
        ];
        if wide {
            r.extend(place(&t.task_arn));
            r.push(task_definition(t.task_definition_arn.as_deref()));
            r.push(
                t.container_instance_arn
                    .as_deref()
                    .map_or("-".into(), short),
            );
            r.push(item.metadata.entity_version.clone());
        }
        r
    }
}

impl Row for ContainerInstance {
    fn header(wide: bool) -> Vec<&'static str> {
        let mut h = vec![
            "CLUSTER", "INSTANCE", "STATUS", "RUNNING", "PENDING", "AGENT", "AGE",
        ];
        if wide {
            h.extend(["ACCOUNT", "REGION", "EC2 INSTANCE", "VERSION"]);
        }
        h
    }
    fn row(item: &Item<Self>, wide: bool, now: DateTime<Utc>) -> Vec<String> {
        let i = &item.entity;
        let mut r = vec![
            i.cluster_arn.as_deref().map_or("-".into(), short),
            short(&i.container_instance_arn),
            opt(&i.status),
            i.running_tasks_count.map_or("-".into(), |n| n.to_string()),
            i.pending_tasks_count.map_or("-".into(), |n| n.to_string()),
            match i.agent_connected {
                Some(true) => "connected".into(),
                Some(false) => "disconnected".into(),
                None => "-".into(),
            },
            age(i.registered_at.as_deref(), now),
        ];
        if wide {
            r.extend(place(&i.container_instance_arn));
            r.push(opt(&i.ec2_instance_id));
            r.push(item.metadata.entity_version.clone());
        }
        r
    }
}

fn count(n: Option<i64>) -> String {
    n.map_or("-".into(), |n| n.to_string())
}

impl Row for Service {
    fn header(wide: bool) -> Vec<&'static str> {
        let mut h = vec![
            "CLUSTER", "SERVICE", "STATUS", "DESIRED", "RUNNING", "PENDING", "ROLLOUT", "AGE",
        ];
        if wide {
            h.extend([
                "ACCOUNT",
                "REGION",
                "DEPLOYMENTS",
                "STRATEGY",
                "LAUNCH",
                "TASK DEFINITION",
                "VERSION",
            ]);
        }
        h
    }
    fn row(item: &Item<Self>, wide: bool, now: DateTime<Utc>) -> Vec<String> {
        let s = &item.entity;
        let primary = s.primary();
        // Services created long ago may lack createdAt; their first
        // deployment's is the next best age.
        let created = (s.created_at.as_deref()).or_else(|| {
            s.deployments
                .iter()
                .filter_map(|d| d.created_at.as_deref())
                .min()
        });
        let mut r = vec![
            s.cluster_arn.as_deref().map_or("-".into(), short),
            s.service_name
                .clone()
                .unwrap_or_else(|| short(&s.service_arn)),
            opt(&s.status),
            count(s.desired_count),
            count(s.running_count),
            count(s.pending_count),
            primary.map_or("-".into(), |d| opt(&d.rollout_state)),
            age(created, now),
        ];
        if wide {
            r.extend(place(&s.service_arn));
            r.push(s.deployments.len().to_string());
            r.push(opt(&s.scheduling_strategy));
            r.push(opt(&s.launch_type));
            r.push(task_definition(s.task_definition.as_deref()));
            r.push(item.metadata.entity_version.clone());
        }
        r
    }
}

/// Aligned columns; widths from the rows at hand (a page at a time, so a
/// list never has to be held whole).
pub(super) fn table(header: Option<&[&str]>, rows: &[Vec<String>]) -> String {
    let n = header.map_or_else(|| rows.first().map_or(0, Vec::len), <[&str]>::len);
    let mut w = vec![0; n];
    for (i, h) in header.into_iter().flatten().enumerate() {
        w[i] = w[i].max(h.len());
    }
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            w[i] = w[i].max(c.len());
        }
    }
    let mut s = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<&str> = cells.collect();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(w[i] - c.len() + 3));
            }
        }
        s.push('\n');
    };
    if let Some(h) = header {
        line(&mut h.iter().copied());
    }
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
    s
}
