//! Who hears about billing (the organization's OWNER) and what they are
//! told when a paid plan stops counting.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use tollgate_auth::roles::OrgRole;
use tollgate_core::config::Config;
use tollgate_db::schema::{memberships, organizations, users};
use tollgate_platform::mail::{
    Email,
    templates::{html_escape, one_line},
};

/// `kind` of the email that tells an OWNER their organization is back on
/// the free plan.
pub const KIND_PLAN_DOWNGRADED: &str = "plan_downgraded";

/// The organization and its OWNER, as billing addresses them.
#[derive(Debug, Clone)]
pub struct OwnerContact {
    /// The organization's display name.
    pub organization_name: String,
    /// The OWNER's email address.
    pub email: String,
    /// The OWNER's name.
    pub name: String,
}

/// The organization's name and its OWNER's address; None when the
/// organization is gone or its owner's account was deleted.
pub async fn owner_of(conn: &mut AsyncPgConnection, organization_id: Uuid) -> QueryResult<Option<OwnerContact>> {
    let found: Option<(String, String, String)> = organizations::table
        .inner_join(memberships::table.inner_join(users::table))
        .filter(organizations::id.eq(organization_id))
        .filter(memberships::role.eq(OrgRole::Owner))
        .filter(users::deleted_at.is_null())
        .select((organizations::name, users::email, users::name))
        .first(conn)
        .await
        .optional()?;
    Ok(found.map(|(organization_name, email, name)| OwnerContact {
        organization_name,
        email,
        name,
    }))
}

/// Why a paid plan stopped counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LapseReason {
    /// Payments kept failing past the grace period.
    GraceEnded,
    /// A cancellation reached the end of the paid period.
    PeriodEnded,
}

impl LapseReason {
    /// The `reason` written in the audit entry.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GraceEnded => "grace_period_ended",
            Self::PeriodEnded => "cancelled_at_period_end",
        }
    }
}

/// The email that tells the OWNER the organization is on the free plan
/// now, and why.
pub fn plan_downgraded(config: &Config, owner: &OwnerContact, paid_plan: &str, reason: LapseReason) -> Email {
    let organization = one_line(&owner.organization_name);
    let name = one_line(&owner.name);
    let plan = one_line(paid_plan);
    let why = match reason {
        LapseReason::GraceEnded => {
            format!("Payments for the {plan} plan of {organization} kept failing, and the grace period has ended.")
        }
        LapseReason::PeriodEnded => {
            format!("The cancelled {plan} subscription of {organization} has reached the end of its paid period.")
        }
    };
    let link = config.app_endpoint("");
    let text = format!(
        "Hi {name},\n\n{why}\n\n{organization} is on the Free plan now, with the Free plan's limits. \
         To subscribe again, open {link} and choose a plan in the organization's billing settings.\n"
    );
    let html = format!(
        "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\"><title>Your plan has changed</title></head>\n\
         <body style=\"font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:15px;\
         line-height:1.5;color:#111111\">\n<p>Hi {name},</p>\n<p>{why}</p>\n<p><strong>{organization}</strong> is on \
         the Free plan now, with the Free plan's limits. To subscribe again, choose a plan in the organization's \
         billing settings at <a href=\"{href}\">{href}</a>.</p>\n</body>\n</html>\n",
        name = html_escape(&name),
        why = html_escape(&why),
        organization = html_escape(&organization),
        href = html_escape(&link),
    );
    Email {
        to: owner.email.clone(),
        subject: format!("{organization} is now on the Free plan"),
        text,
        html,
        kind: KIND_PLAN_DOWNGRADED,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn the_notice_names_the_organization_and_the_reason_safely() {
        let vars = HashMap::from([("APP_URL".to_owned(), "https://app.example.com/".to_owned())]);
        let config = Config::from_vars(&vars).unwrap();
        let owner = OwnerContact {
            organization_name: "Acme <b>\nCorp".to_owned(),
            email: "ada@example.com".to_owned(),
            name: "Ada".to_owned(),
        };
        let email = plan_downgraded(&config, &owner, "Pro", LapseReason::GraceEnded);
        assert_eq!(email.to, "ada@example.com");
        assert_eq!(email.subject, "Acme <b> Corp is now on the Free plan");
        assert!(email.text.contains("grace period has ended"));
        assert!(email.text.contains("https://app.example.com/"));
        assert!(email.html.contains("Acme &lt;b&gt; Corp"));
        let email = plan_downgraded(&config, &owner, "Pro", LapseReason::PeriodEnded);
        assert!(email.text.contains("end of its paid period"));
    }
}
