//! The key layout shared by both stores.

use super::ClusterScope;
use crate::model::{ClusterId, EntityKey, Kind};

/// Key layout shared by both stores.
#[derive(Debug, Clone)]
pub struct Keyspace {
    prefix: String,
}

impl Keyspace {
    pub fn new(prefix: &str) -> Keyspace {
        let mut prefix = prefix.to_string();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Keyspace { prefix }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn tail(key: &EntityKey) -> String {
        let c = &key.cluster;
        format!(
            "{}/{}/{}/{}/{}",
            c.name, c.partition, c.region, c.account, key.id
        )
    }

    pub fn primary(&self, key: &EntityKey) -> String {
        format!("{}{}/{}", self.prefix, key.kind.plural(), Self::tail(key))
    }

    pub fn status_index(&self, key: &EntityKey, status: &str) -> String {
        format!(
            "{}idx/{}/{}/{}",
            self.prefix,
            key.kind.plural(),
            status,
            Self::tail(key)
        )
    }

    /// Prefix of every primary key of a kind (what a watch follows).
    pub fn kind_prefix(&self, kind: Kind) -> String {
        format!("{}{}/", self.prefix, kind.plural())
    }

    pub fn meta(&self, name: &str) -> String {
        format!("{}meta/{}", self.prefix, name)
    }

    /// The key prefix holding exactly the records a list asks for.
    pub fn list_prefix(&self, kind: Kind, cluster: &ClusterScope, status: Option<&str>) -> String {
        let mut p = match status {
            Some(s) => format!("{}idx/{}/{}/", self.prefix, kind.plural(), s),
            None => self.kind_prefix(kind),
        };
        match cluster {
            ClusterScope::All => {}
            ClusterScope::Named(name) => {
                p.push_str(name);
                p.push('/');
            }
            ClusterScope::Exact(c) => {
                p.push_str(&format!(
                    "{}/{}/{}/{}/",
                    c.name, c.partition, c.region, c.account
                ));
            }
        }
        p
    }

    /// Parses a primary or index key back into the entity key.
    pub fn parse(&self, key: &str) -> Option<EntityKey> {
        let rest = key.strip_prefix(&self.prefix)?;
        let (rest, indexed) = match rest.strip_prefix("idx/") {
            Some(r) => (r, true),
            None => (rest, false),
        };
        let mut parts = rest.split('/');
        let kind = Kind::from_plural(parts.next()?)?;
        if indexed {
            parts.next()?;
        }
        let (name, partition, region, account, id) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        if parts.next().is_some() {
            return None;
        }
        Some(EntityKey {
            kind,
            cluster: ClusterId {
                name: name.into(),
                partition: partition.into(),
                region: region.into(),
                account: account.into(),
            },
            id: id.into(),
        })
    }
}

/// The smallest key greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_scope() {
        let ks = Keyspace::new("/p");
        let key = EntityKey {
            kind: Kind::Task,
            cluster: ClusterId {
                name: "c1".into(),
                partition: "aws".into(),
                region: "eu-west-1".into(),
                account: "111122223333".into(),
            },
            id: "t1".into(),
        };
        let primary = ks.primary(&key);
        assert_eq!(primary, "/p/tasks/c1/aws/eu-west-1/111122223333/t1");
        assert_eq!(ks.parse(&primary), Some(key.clone()));
        let idx = ks.status_index(&key, "RUNNING");
        assert_eq!(ks.parse(&idx), Some(key.clone()));
        assert!(idx.starts_with(&ks.list_prefix(
            Kind::Task,
            &ClusterScope::Named("c1".into()),
            Some("RUNNING")
        )));
        assert!(idx.starts_with(&ks.list_prefix(
            Kind::Task,
            &ClusterScope::Exact(key.cluster.clone()),
            Some("RUNNING")
        )));
        assert!(!primary.starts_with(&ks.list_prefix(
            Kind::Task,
            &ClusterScope::Named("c".into()),
            None
        )));
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
    }
}
