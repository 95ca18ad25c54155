//! The contact directory: who an email address belongs to, as the helpdesk last told us.
//!
//! Written beside every ingested ticket, read when a survey provider's response arrives with
//! only the respondent's email, so the review lands on the same contact and account as a
//! rating-link review would.

use serde::{Deserialize, Serialize};

use crate::domain::{Contact, Email};
use crate::ids::{AccountId, ContactId, TenantId};
use crate::keys;
use crate::records::{read_record, record_item};
use crate::store::{ItemStore, Key, StoreError, WriteOp};

/// What the directory remembers of a contact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactEntry {
    pub contact_id: ContactId,
    pub name: String,
    pub email: Email,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<AccountId>,
}

/// The directory key of an address: addresses are matched without regard to case.
pub fn lookup_key(tenant: &TenantId, email: &Email) -> Key {
    keys::contact_by_email(tenant, &email.as_str().to_lowercase())
}

/// The put that (re)writes a contact's directory entry; the latest ticket wins, so a contact
/// who moved to another account is found on the new one.
pub fn directory_put(tenant: &TenantId, contact: &Contact) -> WriteOp {
    let entry = ContactEntry {
        contact_id: contact.id.clone(),
        name: contact.name.clone(),
        email: contact.email.clone(),
        account_id: contact.account.as_ref().map(|a| a.id.clone()),
    };
    WriteOp::put(record_item(
        &lookup_key(tenant, &contact.email),
        "contact",
        &entry,
    ))
}

/// The contact an address belongs to, if any ticket told us.
pub async fn find_by_email(
    store: &dyn ItemStore,
    tenant: &TenantId,
    email: &Email,
) -> Result<Option<ContactEntry>, StoreError> {
    store
        .get(&lookup_key(tenant, email))
        .await?
        .as_ref()
        .map(read_record)
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CustomerAccount;

    #[test]
    fn addresses_match_without_regard_to_case() {
        let t = TenantId::parse("acme").unwrap();
        let a = lookup_key(&t, &Email::parse("Bob.Stone@Example.com").unwrap());
        let b = lookup_key(&t, &Email::parse("bob.stone@example.COM").unwrap());
        assert_eq!(a, b);
        assert!(a.pk.starts_with("T#acme#CONTACT#"));
    }

    #[test]
    fn the_entry_carries_the_contacts_account() {
        let t = TenantId::parse("acme").unwrap();
        let contact = Contact {
            id: ContactId::parse("c-bob").unwrap(),
            name: "Bob".into(),
            email: Email::parse("bob@example.com").unwrap(),
            account: Some(CustomerAccount {
                id: AccountId::parse("acc-7").unwrap(),
                name: "Northwind".into(),
            }),
        };
        let WriteOp::Put { item, .. } = directory_put(&t, &contact) else {
            panic!("a put")
        };
        let entry: ContactEntry = read_record(&item).unwrap();
        assert_eq!(entry.account_id.unwrap().as_str(), "acc-7");
        assert_eq!(entry.contact_id.as_str(), "c-bob");
    }
}
