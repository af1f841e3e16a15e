//! Member accounts and Regions (README "Organizations"): which (account,
//! Region) pairs a process reads besides its own, and the ECS API of each,
//! through the member account's read role (STS AssumeRole; the SDK caches
//! the credentials and refreshes them before they expire).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_config::SdkConfig;

use super::aws::AwsEcs;
use super::{EcsSource, RunScope, SourceError};

/// Which accounts are members.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Accounts {
    /// None: the process's own account alone.
    #[default]
    Own,
    Listed(Vec<String>),
    /// Every active account of the organization (Organizations ListAccounts).
    Organization,
}

impl Accounts {
    /// `CSS_MEMBER_ACCOUNTS`: empty, `ORGANIZATION`, or account ids, comma-separated.
    pub fn parse(v: &str) -> Result<Accounts, String> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(Accounts::Own);
        }
        if v == "ORGANIZATION" {
            return Ok(Accounts::Organization);
        }
        let mut out: Vec<String> = Vec::new();
        for a in v.split(',').map(str::trim) {
            if !crate::model::is_account(a) {
                return Err(format!(
                    "{a:?} is not an account id (12 digits); give account ids, comma-separated, or ORGANIZATION"
                ));
            }
            if !out.iter().any(|o| o == a) {
                out.push(a.to_string());
            }
        }
        Ok(Accounts::Listed(out))
    }
}

/// `CSS_MEMBER_REGIONS`: Region names, comma-separated; empty: the process's own.
pub fn parse_regions(v: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for r in v.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        if !crate::model::is_region_name(r) {
            return Err(format!("{r:?} is not a Region name (such as eu-west-1)"));
        }
        if !out.iter().any(|o| o == r) {
            out.push(r.to_string());
        }
    }
    Ok(out)
}

/// What the member settings say.
#[derive(Debug, Clone, Default)]
pub struct MemberSettings {
    pub accounts: Accounts,
    /// Empty: the home Region alone.
    pub regions: Vec<String>,
    pub role_name: String,
    pub external_id: Option<String>,
    /// Reconcile deletes (guarded) the records of pairs that are not read.
    pub purge_former: bool,
}

impl MemberSettings {
    fn regions<'a>(&'a self, home: &'a RunScope) -> Vec<&'a str> {
        match self.regions.is_empty() {
            true => vec![home.region.as_str()],
            false => self.regions.iter().map(String::as_str).collect(),
        }
    }

    /// Whether events and records of (account, region) are read here: the
    /// home pair, the home account in a member Region, a member account in
    /// a member Region (any account of the organization with ORGANIZATION:
    /// the central bus admits only the organization).
    pub fn reads(&self, home: &RunScope, account: &str, region: &str) -> bool {
        if !self.regions(home).contains(&region) {
            return false;
        }
        account == home.account
            || match &self.accounts {
                Accounts::Own => false,
                Accounts::Listed(l) => l.iter().any(|a| a == account),
                Accounts::Organization => true,
            }
    }

    /// Every pair read besides the home one, for the member `accounts`.
    pub fn pairs(&self, home: &RunScope, accounts: &[String]) -> Vec<RunScope> {
        let mut all = vec![home.account.clone()];
        all.extend(accounts.iter().filter(|a| **a != home.account).cloned());
        let mut out = Vec::new();
        for account in &all {
            for region in self.regions(home) {
                if *account == home.account && region == home.region {
                    continue;
                }
                out.push(RunScope {
                    account: account.clone(),
                    region: region.to_string(),
                });
            }
        }
        out
    }

    /// True when anything beyond the home pair is read.
    pub fn any(&self) -> bool {
        self.accounts != Accounts::Own || !self.regions.is_empty()
    }
}

/// The ECS API of the members, as reconcile and the ingest reach it.
#[async_trait]
pub trait Members: Send + Sync {
    fn settings(&self) -> &MemberSettings;
    /// The member accounts: the listed ones, or the organization's now.
    async fn accounts(&self) -> Result<Vec<String>, SourceError>;
    /// The ECS API of `member` as seen from `home`.
    async fn source(&self, home: &RunScope, member: &RunScope) -> Arc<dyn EcsSource>;
}

/// Members over the AWS SDK: the home account's other Regions with the
/// process's own credentials, other accounts through their read role.
pub struct AwsMembers {
    settings: MemberSettings,
    sdk: SdkConfig,
    /// One attempt per request (reconcile's budget retries), else the SDK's.
    single_attempt: bool,
    /// Clients kept across invocations: their credentials stay cached.
    clients: Mutex<HashMap<(String, String), Arc<AwsEcs>>>,
}

impl AwsMembers {
    pub fn new(settings: MemberSettings, sdk: SdkConfig, single_attempt: bool) -> AwsMembers {
        // The role provider's STS client needs a clock and a sleep (the
        // environment's configuration has both; a hand-made one may not).
        let mut b = sdk.to_builder();
        if sdk.time_source().is_none() {
            b = b.time_source(aws_smithy_async::time::SharedTimeSource::default());
        }
        if sdk.sleep_impl().is_none() {
            use aws_smithy_async::rt::sleep::{SharedAsyncSleep, TokioSleep};
            b = b.sleep_impl(SharedAsyncSleep::new(TokioSleep::new()));
        }
        AwsMembers {
            settings,
            sdk: b.build(),
            single_attempt,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn role_arn(&self, member: &RunScope) -> String {
        format!(
            "arn:{}:iam::{}:role/{}",
            partition(&member.region),
            member.account,
            self.settings.role_name
        )
    }

    async fn client(&self, home: &RunScope, member: &RunScope) -> AwsEcs {
        let region = aws_config::Region::new(member.region.clone());
        let mut conf = self.sdk.to_builder().region(region.clone());
        if member.account != home.account {
            let mut role = aws_config::sts::AssumeRoleProvider::builder(self.role_arn(member))
                .session_name(format!("css-{}", home.account))
                .region(region)
                .configure(&self.sdk);
            if let Some(id) = &self.settings.external_id {
                role = role.external_id(id);
            }
            let provider = role.build().await;
            conf = conf.credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(provider),
            );
        }
        let conf = conf.build();
        match self.single_attempt {
            true => AwsEcs::single_attempt(&conf),
            false => AwsEcs::new(&conf),
        }
    }
}

/// The partition of a Region's ARNs.
fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

#[async_trait]
impl Members for AwsMembers {
    fn settings(&self) -> &MemberSettings {
        &self.settings
    }

    async fn accounts(&self) -> Result<Vec<String>, SourceError> {
        match &self.settings.accounts {
            Accounts::Own => Ok(Vec::new()),
            Accounts::Listed(l) => Ok(l.clone()),
            Accounts::Organization => organization_accounts(&self.sdk).await,
        }
    }

    async fn source(&self, home: &RunScope, member: &RunScope) -> Arc<dyn EcsSource> {
        let key = (member.account.clone(), member.region.clone());
        let cached = self.clients_lock().get(&key).cloned();
        let client = match cached {
            Some(c) => c,
            None => {
                let c = Arc::new(self.client(home, member).await);
                self.clients_lock().entry(key).or_insert(c).clone()
            }
        };
        client
    }
}

impl AwsMembers {
    fn clients_lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<AwsEcs>>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every active account of the organization (from its management account
/// or a delegated administrator).
async fn organization_accounts(sdk: &SdkConfig) -> Result<Vec<String>, SourceError> {
    let org = aws_sdk_organizations::Client::new(sdk);
    let mut pages = org.list_accounts().into_paginator().send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| super::aws::err("ListAccounts", e))?;
        for a in page.accounts.unwrap_or_default() {
            let active = a.status.as_ref().is_none_or(|s| s.as_str() == "ACTIVE");
            if let (Some(id), true) = (a.id, active) {
                out.push(id);
            }
        }
    }
    // An organization lists its management account at least: an empty list
    // is an answer not to act on (a purge would delete every member).
    if out.is_empty() {
        return Err(SourceError::new(
            "ListAccounts",
            "the organization listed no account (is this its management account or a delegated administrator?)",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> RunScope {
        RunScope {
            account: "111111111111".into(),
            region: "us-east-1".into(),
        }
    }

    #[test]
    fn settings_are_read_or_refused_in_one_line() {
        assert_eq!(Accounts::parse(""), Ok(Accounts::Own));
        assert_eq!(Accounts::parse("ORGANIZATION"), Ok(Accounts::Organization));
        assert_eq!(
            Accounts::parse("222222222222, 333333333333,222222222222"),
            Ok(Accounts::Listed(vec![
                "222222222222".into(),
                "333333333333".into()
            ]))
        );
        for bad in [
            "organization",
            "2222",
            "222222222222,",
            "arn:aws:iam::222222222222:root",
        ] {
            assert!(Accounts::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_regions(""), Ok(vec![]));
        assert_eq!(
            parse_regions("eu-west-1,us-east-1,eu-west-1"),
            Ok(vec!["eu-west-1".to_string(), "us-east-1".to_string()])
        );
        assert!(parse_regions("eu-west-1,Europe").is_err());
    }

    #[test]
    fn pairs_are_every_member_account_in_every_member_region_but_home() {
        let listed = MemberSettings {
            accounts: Accounts::Listed(vec!["222222222222".into(), "111111111111".into()]),
            regions: vec!["us-east-1".into(), "eu-west-1".into()],
            ..MemberSettings::default()
        };
        let pairs: Vec<(String, String)> = listed
            .pairs(&home(), &["222222222222".into(), "111111111111".into()])
            .into_iter()
            .map(|s| (s.account, s.region))
            .collect();
        let p = |a: &str, r: &str| (a.to_string(), r.to_string());
        assert_eq!(
            pairs,
            [
                p("111111111111", "eu-west-1"),
                p("222222222222", "us-east-1"),
                p("222222222222", "eu-west-1"),
            ]
        );
        assert!(listed.reads(&home(), "111111111111", "us-east-1"));
        assert!(listed.reads(&home(), "222222222222", "eu-west-1"));
        assert!(!listed.reads(&home(), "333333333333", "eu-west-1"));
        assert!(!listed.reads(&home(), "222222222222", "ap-south-1"));
        // Without members: the home pair alone.
        let own = MemberSettings::default();
        assert!(!own.any());
        assert!(own.pairs(&home(), &[]).is_empty());
        assert!(own.reads(&home(), "111111111111", "us-east-1"));
        assert!(!own.reads(&home(), "222222222222", "us-east-1"));
        assert!(!own.reads(&home(), "111111111111", "eu-west-1"));
        // The organization: any account, in the member Regions.
        let org = MemberSettings {
            accounts: Accounts::Organization,
            ..MemberSettings::default()
        };
        assert!(org.any());
        assert!(org.reads(&home(), "999999999999", "us-east-1"));
        assert!(!org.reads(&home(), "999999999999", "eu-west-1"));
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
        assert_eq!(partition("eu-west-1"), "aws");
    }
}
