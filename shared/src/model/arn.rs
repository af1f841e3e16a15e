//! ECS ARNs (both task/container-instance formats, any partition) and
//! cluster identities.

use std::fmt;

use super::ModelError;

/// A parsed ECS ARN: `arn:<partition>:ecs:<region>:<account>:<type>/[<cluster>/]<id>`
/// (task, container-instance and service ARNs come in both formats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn {
    pub partition: String,
    pub region: String,
    pub account: String,
    pub resource_type: String,
    /// The cluster name, for the long task/container-instance format.
    pub cluster: Option<String>,
    /// The resource id (for a cluster ARN: the cluster name).
    pub id: String,
}

fn is_partition(s: &str) -> bool {
    // ARN grammar: a lower-case word, optionally hyphenated (aws, aws-cn, aws-us-gov, aws-iso-b...).
    !s.is_empty()
        && s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.split('-').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

fn is_region(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.split('-').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// An AWS account id: 12 digits.
pub fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Cluster names: up to 255 letters, digits, hyphens and underscores.
/// A Region name as AWS writes them: `eu-west-1`, `us-gov-east-1`.
pub fn is_region_name(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let letters = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1].iter().all(letters)
        && parts[parts.len() - 1].len() <= 2
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

pub fn is_cluster_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Task and container-instance ids: hex ids, or UUIDs for old instances.
pub fn is_resource_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Arn {
    pub fn parse(arn: &str) -> Result<Arn, ModelError> {
        let err = |reason| ModelError::Arn {
            arn: arn.to_string(),
            reason,
        };
        let mut parts = arn.splitn(6, ':');
        let (Some("arn"), Some(partition), Some(service), Some(region), Some(account), Some(rest)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(err(
                "expected arn:<partition>:ecs:<region>:<account>:<resource>",
            ));
        };
        if !is_partition(partition) {
            return Err(err("bad partition"));
        }
        if service != "ecs" {
            return Err(err("not an ECS ARN"));
        }
        if !is_region(region) {
            return Err(err("bad region"));
        }
        if !is_account(account) {
            return Err(err("bad account id"));
        }
        let segs: Vec<&str> = rest.split('/').collect();
        let (resource_type, cluster, id) = match segs.as_slice() {
            [t, id] => (*t, None, *id),
            [t, cluster, id] if *t != "cluster" => (*t, Some(*cluster), *id),
            _ => return Err(err("bad resource part")),
        };
        match resource_type {
            "cluster" => {
                if !is_cluster_name(id) {
                    return Err(err("bad cluster name"));
                }
            }
            "service" => {
                // Service names follow the cluster name rules.
                if !is_cluster_name(id) {
                    return Err(err("bad service name"));
                }
                if let Some(c) = cluster {
                    if !is_cluster_name(c) {
                        return Err(err("bad cluster name"));
                    }
                }
            }
            "task" | "container-instance" => {
                if !is_resource_id(id) {
                    return Err(err("bad resource id"));
                }
                if let Some(c) = cluster {
                    if !is_cluster_name(c) {
                        return Err(err("bad cluster name"));
                    }
                }
            }
            _ => return Err(err("unsupported resource type")),
        }
        Ok(Arn {
            partition: partition.to_string(),
            region: region.to_string(),
            account: account.to_string(),
            resource_type: resource_type.to_string(),
            cluster: cluster.map(str::to_string),
            id: id.to_string(),
        })
    }

    /// Partition, region and account: where the resource lives.
    pub fn place(&self) -> (&str, &str, &str) {
        (&self.partition, &self.region, &self.account)
    }

    pub fn parse_as(arn: &str, resource_type: &'static str) -> Result<Arn, ModelError> {
        let parsed = Arn::parse(arn)?;
        if parsed.resource_type != resource_type {
            return Err(ModelError::Arn {
                arn: arn.to_string(),
                reason: match resource_type {
                    "cluster" => "not a cluster ARN",
                    "task" => "not a task ARN",
                    "service" => "not a service ARN",
                    _ => "not a container-instance ARN",
                },
            });
        }
        Ok(parsed)
    }
}

/// One cluster, identified by its ARN's components so that same-named
/// clusters in different accounts or regions never collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId {
    pub name: String,
    pub partition: String,
    pub region: String,
    pub account: String,
}

impl ClusterId {
    pub fn from_arn(arn: &str) -> Result<ClusterId, ModelError> {
        let a = Arn::parse_as(arn, "cluster")?;
        Ok(ClusterId {
            name: a.id,
            partition: a.partition,
            region: a.region,
            account: a.account,
        })
    }

    /// Partition, region and account: where the cluster lives.
    pub fn place(&self) -> (&str, &str, &str) {
        (&self.partition, &self.region, &self.account)
    }

    pub fn arn(&self) -> String {
        format!(
            "arn:{}:ecs:{}:{}:cluster/{}",
            self.partition, self.region, self.account, self.name
        )
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn())
    }
}
