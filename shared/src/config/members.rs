//! Member accounts and Regions settings (README "Organizations"), read by
//! css-reconcile and css-ingest, and by server mode when it reconciles or
//! polls a queue.

use clap::Args;

use super::ConfigError;
use crate::ecs::members::{parse_regions, Accounts, MemberSettings};

#[derive(Debug, Clone, Args)]
pub struct MemberArgs {
    /// Other accounts read through their read role: account ids,
    /// comma-separated, or ORGANIZATION (every active account of the
    /// organization); empty: this account alone.
    #[arg(long, env = "CSS_MEMBER_ACCOUNTS", default_value = "", value_parser = Accounts::parse, value_name = "CSS_MEMBER_ACCOUNTS")]
    pub member_accounts: Accounts,
    /// Regions read in every member account and this one, comma-separated;
    /// empty: this process's Region.
    #[arg(
        long,
        env = "CSS_MEMBER_REGIONS",
        default_value = "",
        value_name = "CSS_MEMBER_REGIONS"
    )]
    pub member_regions: String,
    /// The read role's name in each member account.
    #[arg(
        long,
        env = "CSS_MEMBER_ROLE_NAME",
        default_value = "css-member-read",
        value_name = "CSS_MEMBER_ROLE_NAME"
    )]
    pub member_role_name: String,
    /// The external id the read roles require, if any.
    #[arg(
        long,
        env = "CSS_MEMBER_EXTERNAL_ID",
        default_value = "",
        hide_env_values = true,
        value_name = "CSS_MEMBER_EXTERNAL_ID"
    )]
    pub member_external_id: String,
    /// Reconcile deletes (guarded) the records of accounts and Regions that
    /// are no longer read.
    #[arg(long, env = "CSS_PURGE_FORMER_MEMBERS", default_value = "false", action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new(), value_name = "CSS_PURGE_FORMER_MEMBERS")]
    pub purge_former_members: bool,
}

impl MemberArgs {
    pub fn from_env() -> Result<MemberArgs, ConfigError> {
        super::from_env::<MemberArgs>().map_err(ConfigError::Environment)
    }

    pub fn settings(&self) -> Result<MemberSettings, ConfigError> {
        let regions =
            parse_regions(&self.member_regions).map_err(|reason| ConfigError::Invalid {
                name: "CSS_MEMBER_REGIONS",
                reason,
            })?;
        let role = self.member_role_name.trim();
        if role.is_empty()
            || role.len() > 64
            || !role
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
        {
            return Err(ConfigError::Invalid {
                name: "CSS_MEMBER_ROLE_NAME",
                reason: format!("{role:?} is not an IAM role name"),
            });
        }
        let external = self.member_external_id.trim();
        Ok(MemberSettings {
            accounts: self.member_accounts.clone(),
            regions,
            role_name: role.to_string(),
            external_id: (!external.is_empty()).then(|| external.to_string()),
            purge_former: self.purge_former_members,
        })
    }
}
