//! Conformance suites that every adapter of a port must pass (feature `conformance`).
//!
//! The embedded adapters are only a faithful stand-in for production if they behave the same
//! way on the same requests; these suites pin that behaviour down once, and each adapter crate
//! runs them in its tests.

/// The `ItemStore` suite.
///
/// Every test takes `&dyn ItemStore`, writes under its own random tenant-like key prefix (so
/// runs against a shared table never collide) and panics with a message on failure.
///
/// In an adapter's tests, either generate one `#[tokio::test]` per conformance test:
///
/// ```ignore
/// closedloop_core::store_conformance_tests!(fresh_store().await);
/// ```
///
/// or run everything at once with [`store::run_all`], which reports every failing test.
pub mod store {
    use std::collections::BTreeMap;
    use std::future::{Future, poll_fn};
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::{SystemTime, UNIX_EPOCH};

    use crate::store::{
        CancelReason, Condition, Index, Item, ItemExt, ItemStore, Key, MAX_ITEM_BYTES,
        MAX_TRANSACTION_ITEMS, Page, Query, SortKeyCondition, StoreError, TTL_ATTRIBUTE, Update,
        Value, WriteOp,
    };

    /// One conformance test, callable through a function pointer.
    pub type StoreTest =
        for<'a> fn(&'a dyn ItemStore) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

    macro_rules! test_table {
        (() $($name:ident),* $(,)?) => {
            /// Every test of the suite, by name, in the order [`run_all`] runs them.
            pub const TESTS: &[(&str, StoreTest)] =
                &[$((stringify!($name), |store| Box::pin($name(store)))),*];
        };
    }
    crate::__store_conformance_names!(test_table!());

    /// Runs every test against `store`, one after the other, and panics at the end listing
    /// each failing test (a failure does not stop the run).
    pub async fn run_all(store: &dyn ItemStore) {
        let mut failures = Vec::new();
        for (name, test) in TESTS {
            if let Err(panic) = CatchUnwind(test(store)).await {
                failures.push(format!("  {name}: {}", panic_message(panic.as_ref())));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} store conformance tests failed:\n{}",
            failures.len(),
            TESTS.len(),
            failures.join("\n")
        );
    }

    // ----------------------------------------------------------------------------------------
    // Items and values

    /// Every `Value` variant, nested lists and maps, and numbers as strings come back as written.
    pub async fn round_trip_every_value_type(store: &dyn ItemStore) {
        let p = prefix();
        let mut nested = BTreeMap::new();
        nested.insert(
            "deep".to_string(),
            Value::L(vec![Value::n(1), Value::s("two")]),
        );
        nested.insert("empty_map".to_string(), Value::M(BTreeMap::new()));
        let mut map = BTreeMap::new();
        map.insert("inner".to_string(), Value::M(nested));
        map.insert("flag".to_string(), Value::Bool(false));
        let item = item(
            &format!("{p}#P"),
            "ITEM",
            [
                ("s", Value::s("plain")),
                ("s_unicode", Value::s("héllo wörld 😀 \"quoted\"\n")),
                ("s_empty", Value::s("")),
                ("n_int", Value::n(42)),
                ("n_negative", Value::n(-17)),
                ("n_zero", Value::n(0)),
                ("n_decimal", Value::N("3.14159".into())),
                ("n_small", Value::N("-0.0001".into())),
                (
                    "n_38_digits",
                    Value::N("12345678901234567890123456789012345678".into()),
                ),
                ("b_true", Value::Bool(true)),
                ("b_false", Value::Bool(false)),
                ("null", Value::Null(true)),
                (
                    "list",
                    Value::L(vec![
                        Value::s("a"),
                        Value::n(1),
                        Value::Bool(true),
                        Value::Null(true),
                        Value::L(vec![]),
                        Value::L(vec![Value::L(vec![Value::s("deeper")])]),
                        Value::M(BTreeMap::new()),
                    ]),
                ),
                ("list_empty", Value::L(vec![])),
                ("map", Value::M(map)),
            ],
        );
        ok(store.put(item.clone(), None).await, "put");
        let got = ok(store.get(&key_of(&item)).await, "get");
        assert_eq!(got.as_ref(), Some(&item), "the item read back differs");
        let n = got.as_ref().and_then(|i| i.get("n_38_digits")).cloned();
        assert_eq!(
            n,
            Some(Value::N("12345678901234567890123456789012345678".into())),
            "a 38-digit number must keep every digit (numbers travel as strings)"
        );
    }

    /// Getting an item that was never written gives `None`, not an error.
    pub async fn get_missing_item_is_none(store: &dyn ItemStore) {
        let p = prefix();
        let got = ok(store.get(&Key::new(format!("{p}#P"), "NOPE")).await, "get");
        assert_eq!(got, None);
        let shared = store.get_shared(&Key::new(format!("{p}#P"), "NOPE")).await;
        assert_eq!(ok(shared, "get_shared"), None);
    }

    /// A put replaces the whole item: attributes it does not name are gone.
    pub async fn put_replaces_whole_item(store: &dyn ItemStore) {
        let p = prefix();
        let first = item(
            &format!("{p}#P"),
            "A",
            [("a", Value::n(1)), ("b", Value::n(2))],
        );
        let second = item(&format!("{p}#P"), "A", [("a", Value::n(3))]);
        ok(store.put(first, None).await, "first put");
        ok(store.put(second.clone(), None).await, "second put");
        let shared = ok(store.get_shared(&key_of(&second)).await, "get_shared");
        assert_eq!(
            shared.as_deref(),
            Some(&second),
            "get_shared reads the same item"
        );
        assert_eq!(ok(store.get(&key_of(&second)).await, "get"), Some(second));
    }

    /// `item_absent` lets the first put through and fails the second with the item as it was.
    pub async fn conditional_put_if_absent(store: &dyn ItemStore) {
        let p = prefix();
        let first = item(&format!("{p}#P"), "ONCE", [("who", Value::s("first"))]);
        let second = item(&format!("{p}#P"), "ONCE", [("who", Value::s("second"))]);
        ok(
            store
                .put(first.clone(), Some(Condition::item_absent()))
                .await,
            "first conditional put",
        );
        let old = condition_failed(
            store.put(second, Some(Condition::item_absent())).await,
            "second conditional put",
        );
        assert_eq!(
            old.as_ref(),
            Some(&first),
            "ConditionFailed must carry ALL_OLD"
        );
        assert_eq!(ok(store.get(&key_of(&first)).await, "get"), Some(first));
    }

    /// Keys must be non-empty strings; an item without them is refused.
    pub async fn invalid_keys_are_refused(store: &dyn ItemStore) {
        let p = prefix();
        let mut no_sk = Item::new();
        no_sk.insert("PK".into(), Value::s(format!("{p}#P")));
        invalid(store.put(no_sk, None).await, "put without SK");
        let mut numeric_pk = Key::new(format!("{p}#P"), "X").to_item();
        numeric_pk.insert("PK".into(), Value::n(1));
        invalid(store.put(numeric_pk, None).await, "put with numeric PK");
        invalid(
            store
                .put(Key::new(format!("{p}#P"), "").to_item(), None)
                .await,
            "put with empty SK",
        );
        invalid(store.get(&Key::new("", "X")).await, "get with empty PK");
        invalid(
            store
                .update(
                    &Key::new(format!("{p}#P"), ""),
                    Update::new().add("n", 1),
                    None,
                )
                .await,
            "update with empty SK",
        );
        invalid(
            store.delete(&Key::new("", "X"), None).await,
            "delete with empty PK",
        );
    }

    /// Index keys must be non-empty strings, whether written by put, update or transaction
    /// (DynamoDB refuses others; some emulators do not, so the adapters check first).
    pub async fn index_keys_must_be_strings(store: &dyn ItemStore) {
        let p = prefix();
        let pk = format!("{p}#P");
        for (attr, value) in [
            ("GSI1PK", Value::n(1)),
            ("GSI1SK", Value::Bool(true)),
            ("GSI2PK", Value::s("")),
            ("GSI2SK", Value::L(vec![])),
        ] {
            let bad = item(&pk, "BAD", [(attr, value.clone())]);
            invalid(
                store.put(bad.clone(), None).await,
                &format!("put with {attr}={value:?}"),
            );
            invalid(
                store.transact_write(vec![WriteOp::put(bad)]).await,
                &format!("transaction put with {attr}={value:?}"),
            );
            invalid(
                store
                    .update(
                        &Key::new(&pk, "BAD"),
                        Update::new().set(attr, value.clone()),
                        None,
                    )
                    .await,
                &format!("update setting {attr}={value:?}"),
            );
        }
        invalid(
            store
                .update(&Key::new(&pk, "BAD"), Update::new().add("GSI1SK", 1), None)
                .await,
            "update adding to GSI1SK",
        );
        assert_eq!(
            ok(store.get(&Key::new(&pk, "BAD")).await, "get"),
            None,
            "nothing written"
        );
    }

    /// Items over 400 KB are refused by put and by an update that would grow them past it.
    pub async fn item_size_limit(store: &dyn ItemStore) {
        let p = prefix();
        let pk = format!("{p}#P");
        let too_big = item(
            &pk,
            "BIG",
            [("blob", Value::S("x".repeat(MAX_ITEM_BYTES + 1)))],
        );
        invalid(store.put(too_big, None).await, "put over 400 KB");
        assert_eq!(ok(store.get(&Key::new(&pk, "BIG")).await, "get"), None);

        let near = item(&pk, "NEAR", [("blob", Value::S("x".repeat(390 * 1024)))]);
        ok(store.put(near.clone(), None).await, "put of 390 KB");
        invalid(
            store
                .update(
                    &Key::new(&pk, "NEAR"),
                    Update::new().set("more", Value::S("y".repeat(20 * 1024))),
                    None,
                )
                .await,
            "update growing the item past 400 KB",
        );
        assert_eq!(
            ok(store.get(&Key::new(&pk, "NEAR")).await, "get"),
            Some(near)
        );
    }

    /// Attribute names that are DynamoDB reserved words or hold expression syntax work
    /// everywhere (adapters must use placeholders, never interpolate names).
    pub async fn odd_attribute_names(store: &dyn ItemStore) {
        let p = prefix();
        let names = [
            "status",
            "name",
            "size",
            "a.b",
            "with space",
            "#x",
            ":v",
            "ünï",
            "list[0]",
            "AND",
        ];
        let pk = format!("{p}#P");
        let original = item(&pk, "ODD", names.iter().map(|n| (*n, Value::s(*n))));
        ok(store.put(original.clone(), None).await, "put");
        assert_eq!(
            ok(store.get(&key_of(&original)).await, "get"),
            Some(original.clone())
        );
        for name in names {
            let condition = Condition::eq(name, Value::s(name))
                .and(Condition::Exists(name.into()))
                .and(Condition::BeginsWith(
                    name.into(),
                    name.chars().take(1).collect(),
                ));
            let updated = ok(
                store
                    .update(
                        &key_of(&original),
                        Update::new()
                            .set(name, Value::s(format!("{name}!")))
                            .add(format!("{name} count"), 2)
                            .set_if_not_exists(format!("{name} first"), Value::Bool(true)),
                        Some(condition),
                    )
                    .await,
                &format!("update of {name:?}"),
            );
            assert_eq!(updated.get(name), Some(&Value::s(format!("{name}!"))));
            assert_eq!(updated.get(&format!("{name} count")), Some(&Value::n(2)));
            assert_eq!(
                updated.get(&format!("{name} first")),
                Some(&Value::Bool(true))
            );
            let removed = ok(
                store
                    .update(&key_of(&original), Update::new().remove(name), None)
                    .await,
                &format!("remove of {name:?}"),
            );
            assert!(!removed.contains_key(name), "{name:?} should be removed");
        }
    }

    /// An item whose TTL is in the past may still be read (deletion is lazy); if it is, the
    /// TTL attribute is kept as written.
    pub async fn ttl_attribute_is_kept(store: &dyn ItemStore) {
        let p = prefix();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let past = item(
            &format!("{p}#P"),
            "PAST",
            [(TTL_ATTRIBUTE, Value::n(now - 3600))],
        );
        let future = item(
            &format!("{p}#P"),
            "FUTURE",
            [(TTL_ATTRIBUTE, Value::n(now + 3600))],
        );
        ok(store.put(past.clone(), None).await, "put expired");
        ok(store.put(future.clone(), None).await, "put not expired");
        if let Some(got) = ok(store.get(&key_of(&past)).await, "get expired") {
            assert_eq!(got.get(TTL_ATTRIBUTE), past.get(TTL_ATTRIBUTE));
        }
        assert_eq!(ok(store.get(&key_of(&future)).await, "get"), Some(future));
    }

    // ----------------------------------------------------------------------------------------
    // Conditions

    /// `Eq`/`Lt`/`Le`/`Gt`/`Ge` on strings (bytes) and numbers (numeric: "9" < "10"), and on a
    /// missing attribute (always false).
    pub async fn condition_comparisons(store: &dyn ItemStore) {
        let p = prefix();
        let target = item(
            &format!("{p}#P"),
            "C",
            [
                ("n", Value::n(9)),
                ("dec", Value::N("-1.5".into())),
                ("s", Value::s("m")),
                ("b", Value::Bool(true)),
                ("z", Value::Null(true)),
                ("l", Value::L(vec![Value::s("a"), Value::n(1)])),
                (
                    "map",
                    Value::M(BTreeMap::from([("k".to_string(), Value::s("v"))])),
                ),
            ],
        );
        ok(store.put(target.clone(), None).await, "put");
        let n = |v: &str| Value::N(v.into());
        let cases: Vec<(Condition, bool)> = vec![
            (Condition::Eq("n".into(), n("9")), true),
            (Condition::Eq("n".into(), n("10")), false),
            (Condition::Lt("n".into(), n("10")), true),
            (Condition::Gt("n".into(), n("10")), false),
            (Condition::Ge("n".into(), n("9")), true),
            (Condition::Le("n".into(), n("8")), false),
            (Condition::Le("n".into(), n("9")), true),
            (Condition::Gt("n".into(), n("-100")), true),
            (Condition::Lt("dec".into(), n("0.25")), true),
            (Condition::Gt("dec".into(), n("-2")), true),
            (Condition::Lt("dec".into(), n("-1.25")), true),
            (Condition::Eq("dec".into(), n("-1.5")), true),
            (Condition::Eq("s".into(), Value::s("m")), true),
            (Condition::Lt("s".into(), Value::s("n")), true),
            (Condition::Lt("s".into(), Value::s("ma")), true),
            (Condition::Gt("s".into(), Value::s("M")), true),
            (Condition::Ge("s".into(), Value::s("m")), true),
            (Condition::Gt("s".into(), Value::s("m")), false),
            (Condition::Eq("b".into(), Value::Bool(true)), true),
            (Condition::Eq("b".into(), Value::Bool(false)), false),
            (Condition::Eq("z".into(), Value::Null(true)), true),
            (
                Condition::Eq("l".into(), Value::L(vec![Value::s("a"), Value::n(1)])),
                true,
            ),
            (
                Condition::Eq("l".into(), Value::L(vec![Value::s("a"), Value::n(2)])),
                false,
            ),
            (
                Condition::Eq(
                    "map".into(),
                    Value::M(BTreeMap::from([("k".to_string(), Value::s("v"))])),
                ),
                true,
            ),
            (Condition::Eq("missing".into(), Value::s("x")), false),
            (Condition::Lt("missing".into(), n("1")), false),
            (Condition::Ge("missing".into(), n("1")), false),
            (
                Condition::Not(Box::new(Condition::Lt("missing".into(), n("1")))),
                true,
            ),
            (Condition::Exists("n".into()), true),
            (Condition::NotExists("n".into()), false),
            (Condition::Exists("missing".into()), false),
            (Condition::NotExists("missing".into()), true),
            (Condition::item_present(), true),
            (Condition::item_absent(), false),
        ];
        for (condition, expected) in cases {
            assert_eq!(
                holds(store, &target, condition.clone()).await,
                expected,
                "{condition:?} on {target:?}"
            );
        }
    }

    /// `BeginsWith`, `And`, `Or`, `Not`, including on an absent item.
    pub async fn condition_combinators(store: &dyn ItemStore) {
        let p = prefix();
        let target = item(
            &format!("{p}#P"),
            "C",
            [("s", Value::s("main#1")), ("n", Value::n(5))],
        );
        ok(store.put(target.clone(), None).await, "put");
        let yes = || Condition::eq("n", Value::n(5));
        let no = || Condition::eq("n", Value::n(6));
        let cases: Vec<(Condition, bool)> = vec![
            (Condition::BeginsWith("s".into(), "main#".into()), true),
            (Condition::BeginsWith("s".into(), "main#1".into()), true),
            (Condition::BeginsWith("s".into(), "mainx".into()), false),
            (Condition::BeginsWith("n".into(), "5".into()), false),
            (Condition::BeginsWith("missing".into(), "m".into()), false),
            (yes().and(yes()), true),
            (yes().and(no()), false),
            (no().and(yes()), false),
            (yes().or(no()), true),
            (no().or(no()), false),
            (no().or(no()).or(yes()), true),
            (yes().negate(), false),
            (no().negate(), true),
            (yes().and(no()).negate(), true),
            (yes().and(no().or(yes())), true),
            (Condition::And(vec![yes(), yes(), no()]), false),
        ];
        for (condition, expected) in cases {
            assert_eq!(
                holds(store, &target, condition.clone()).await,
                expected,
                "{condition:?} on {target:?}"
            );
        }
        // On an item that does not exist, only absence-style conditions hold.
        let absent = Key::new(format!("{p}#P"), "ABSENT");
        let absent_cases: Vec<(Condition, bool)> = vec![
            (Condition::item_absent(), true),
            (Condition::item_present(), false),
            (yes(), false),
            (yes().negate(), true),
            (Condition::BeginsWith("s".into(), "m".into()), false),
            (Condition::item_absent().or(yes()), true),
        ];
        for (condition, expected) in absent_cases {
            let result = store.delete(&absent, Some(condition.clone())).await;
            let held = match result {
                Ok(()) => true,
                Err(StoreError::ConditionFailed { old }) => {
                    assert_eq!(old, None, "an absent item has no ALL_OLD");
                    false
                }
                Err(e) => panic!("delete with {condition:?}: unexpected error {e:?}"),
            };
            assert_eq!(held, expected, "{condition:?} on an absent item");
        }
    }

    // ----------------------------------------------------------------------------------------
    // Updates

    /// SET and REMOVE change only the named attributes and return the item afterwards.
    pub async fn update_set_and_remove(store: &dyn ItemStore) {
        let p = prefix();
        let original = item(
            &format!("{p}#P"),
            "U",
            [
                ("keep", Value::s("k")),
                ("change", Value::n(1)),
                ("drop", Value::s("d")),
            ],
        );
        ok(store.put(original.clone(), None).await, "put");
        let new = ok(
            store
                .update(
                    &key_of(&original),
                    Update::new()
                        .set("change", Value::s("now a string"))
                        .set("added", Value::L(vec![Value::n(1)]))
                        .remove("drop")
                        .remove("never_there"),
                    None,
                )
                .await,
            "update",
        );
        let expected = item(
            &format!("{p}#P"),
            "U",
            [
                ("keep", Value::s("k")),
                ("change", Value::s("now a string")),
                ("added", Value::L(vec![Value::n(1)])),
            ],
        );
        assert_eq!(new, expected, "update returns ALL_NEW");
        assert_eq!(
            ok(store.get(&key_of(&original)).await, "get"),
            Some(expected)
        );
    }

    /// `set_if_not_exists` keeps an existing value and fills a missing one.
    pub async fn update_set_if_not_exists(store: &dyn ItemStore) {
        let p = prefix();
        let key = Key::new(format!("{p}#P"), "U");
        ok(
            store
                .put(
                    item(&key.pk, &key.sk, [("first_seen", Value::s("monday"))]),
                    None,
                )
                .await,
            "put",
        );
        let new = ok(
            store
                .update(
                    &key,
                    Update::new()
                        .set_if_not_exists("first_seen", Value::s("tuesday"))
                        .set_if_not_exists("created", Value::s("tuesday")),
                    None,
                )
                .await,
            "update",
        );
        assert_eq!(
            new.get("first_seen"),
            Some(&Value::s("monday")),
            "existing value kept"
        );
        assert_eq!(
            new.get("created"),
            Some(&Value::s("tuesday")),
            "missing value set"
        );
    }

    /// ADD starts a missing counter at 0, adds to an existing one, and accepts negatives.
    pub async fn update_add(store: &dyn ItemStore) {
        let p = prefix();
        let key = Key::new(format!("{p}#P"), "COUNTER");
        let first = ok(
            store.update(&key, Update::new().add("hits", 5), None).await,
            "add 5",
        );
        assert_eq!(first.get("hits"), Some(&Value::n(5)));
        let second = ok(
            store
                .update(&key, Update::new().add("hits", -7).add("other", 1), None)
                .await,
            "add -7",
        );
        assert_eq!(second.get("hits"), Some(&Value::n(-2)));
        assert_eq!(second.get("other"), Some(&Value::n(1)));
        ok(
            store
                .put(
                    item(&key.pk, &key.sk, [("hits", Value::N("1.5".into()))]),
                    None,
                )
                .await,
            "put decimal",
        );
        let decimal = ok(
            store.update(&key, Update::new().add("hits", 2), None).await,
            "add 2",
        );
        assert_eq!(decimal.get("hits").and_then(decimal_value), Some(3.5));
    }

    /// An update on a missing item creates it from the key and the update.
    pub async fn update_creates_missing_item(store: &dyn ItemStore) {
        let p = prefix();
        let key = Key::new(format!("{p}#P"), "NEW");
        let new = ok(
            store
                .update(
                    &key,
                    Update::new()
                        .set("a", Value::s("x"))
                        .add("n", 1)
                        .set_if_not_exists("since", Value::n(7))
                        .remove("ghost"),
                    None,
                )
                .await,
            "update",
        );
        let expected = item(
            &key.pk,
            &key.sk,
            [
                ("a", Value::s("x")),
                ("n", Value::n(1)),
                ("since", Value::n(7)),
            ],
        );
        assert_eq!(new, expected);
        assert_eq!(ok(store.get(&key).await, "get"), Some(expected));
    }

    /// A failed update condition changes nothing and reports the item as it was (or `None`).
    pub async fn conditional_update_failure(store: &dyn ItemStore) {
        let p = prefix();
        let original = item(&format!("{p}#P"), "U", [("status", Value::s("open"))]);
        ok(store.put(original.clone(), None).await, "put");
        let old = condition_failed(
            store
                .update(
                    &key_of(&original),
                    Update::new().set("status", Value::s("closed")),
                    Some(Condition::eq("status", Value::s("pending"))),
                )
                .await,
            "update with a false condition",
        );
        assert_eq!(
            old,
            Some(original.clone()),
            "ConditionFailed carries ALL_OLD"
        );
        assert_eq!(
            ok(store.get(&key_of(&original)).await, "get"),
            Some(original.clone())
        );

        let missing = Key::new(format!("{p}#P"), "MISSING");
        let old = condition_failed(
            store
                .update(
                    &missing,
                    Update::new().add("n", 1),
                    Some(Condition::item_present()),
                )
                .await,
            "update of a missing item guarded by item_present",
        );
        assert_eq!(old, None);
        assert_eq!(
            ok(store.get(&missing).await, "get"),
            None,
            "no item created"
        );

        let new = ok(
            store
                .update(
                    &key_of(&original),
                    Update::new().set("status", Value::s("closed")),
                    Some(Condition::eq("status", Value::s("open"))),
                )
                .await,
            "update with a true condition",
        );
        assert_eq!(new.get("status"), Some(&Value::s("closed")));
    }

    /// Updates DynamoDB refuses are refused and change nothing: key attributes, ADD to a
    /// non-number, an empty update, one attribute in two clauses.
    pub async fn invalid_updates_are_refused(store: &dyn ItemStore) {
        let p = prefix();
        let original = item(&format!("{p}#P"), "U", [("s", Value::s("text"))]);
        let key = key_of(&original);
        ok(store.put(original.clone(), None).await, "put");
        invalid(
            store
                .update(&key, Update::new().set("PK", Value::s("x")), None)
                .await,
            "SET PK",
        );
        invalid(
            store.update(&key, Update::new().remove("SK"), None).await,
            "REMOVE SK",
        );
        invalid(
            store.update(&key, Update::new().add("s", 1), None).await,
            "ADD to a string",
        );
        invalid(
            store.update(&key, Update::new(), None).await,
            "empty update",
        );
        invalid(
            store
                .update(&key, Update::new().set("a", Value::n(1)).remove("a"), None)
                .await,
            "SET and REMOVE of one attribute",
        );
        invalid(
            store
                .update(&key, Update::new().set("n", Value::N("1e3".into())), None)
                .await,
            "a number in exponent form",
        );
        assert_eq!(ok(store.get(&key).await, "get"), Some(original));
    }

    // ----------------------------------------------------------------------------------------
    // Deletes

    /// Deleting a missing item is fine; a false condition keeps the item and reports it.
    pub async fn delete_with_and_without_condition(store: &dyn ItemStore) {
        let p = prefix();
        ok(
            store
                .delete(&Key::new(format!("{p}#P"), "NEVER"), None)
                .await,
            "delete missing",
        );
        let target = item(&format!("{p}#P"), "D", [("v", Value::n(1))]);
        ok(store.put(target.clone(), None).await, "put");
        let old = condition_failed(
            store
                .delete(&key_of(&target), Some(Condition::eq("v", Value::n(2))))
                .await,
            "delete with a false condition",
        );
        assert_eq!(old, Some(target.clone()));
        assert_eq!(
            ok(store.get(&key_of(&target)).await, "get"),
            Some(target.clone())
        );
        ok(
            store
                .delete(&key_of(&target), Some(Condition::eq("v", Value::n(1))))
                .await,
            "delete with a true condition",
        );
        assert_eq!(ok(store.get(&key_of(&target)).await, "get"), None);
        ok(store.delete(&key_of(&target), None).await, "delete again");
    }

    // ----------------------------------------------------------------------------------------
    // Queries

    /// Sort-key conditions on the table, and the partition boundary (`P1` is not `P10`).
    pub async fn query_sort_key_conditions(store: &dyn ItemStore) {
        let p = prefix();
        let pk = format!("{p}#P1");
        for sk in ["a", "b#1", "b#2", "b#3", "bb", "c", "d", "é#1", "é#2", "éa"] {
            ok(
                store.put(item(&pk, sk, [("v", Value::s(sk))]), None).await,
                "put",
            );
        }
        ok(
            store.put(item(&format!("{p}#P10"), "a", []), None).await,
            "put other partition",
        );
        use SortKeyCondition as Sk;
        let cases: Vec<(Option<Sk>, Vec<&str>)> = vec![
            (
                None,
                vec!["a", "b#1", "b#2", "b#3", "bb", "c", "d", "é#1", "é#2", "éa"],
            ),
            (Some(Sk::BeginsWith("b#".into())), vec!["b#1", "b#2", "b#3"]),
            (
                Some(Sk::BeginsWith("b".into())),
                vec!["b#1", "b#2", "b#3", "bb"],
            ),
            (Some(Sk::BeginsWith("é#".into())), vec!["é#1", "é#2"]),
            (Some(Sk::BeginsWith("z".into())), vec![]),
            (
                Some(Sk::Between("b#2".into(), "c".into())),
                vec!["b#2", "b#3", "bb", "c"],
            ),
            (Some(Sk::Between("c".into(), "c".into())), vec!["c"]),
            (Some(Sk::Lt("b#1".into())), vec!["a"]),
            (Some(Sk::Le("b#1".into())), vec!["a", "b#1"]),
            (Some(Sk::Gt("d".into())), vec!["é#1", "é#2", "éa"]),
            (Some(Sk::Ge("d".into())), vec!["d", "é#1", "é#2", "éa"]),
            (Some(Sk::Eq("c".into())), vec!["c"]),
            (Some(Sk::Eq("cc".into())), vec![]),
        ];
        for (condition, expected) in cases {
            let mut query = Query::partition(&pk);
            query.sk = condition.clone();
            let forward = sort_keys(&query_all(store, query.clone()).await);
            assert_eq!(forward, expected, "forward query with {condition:?}");
            let backward = sort_keys(&query_all(store, query.backward()).await);
            let reversed: Vec<&str> = expected.iter().rev().copied().collect();
            assert_eq!(backward, reversed, "backward query with {condition:?}");
        }
        assert_eq!(
            sort_keys(&query_all(store, Query::partition(format!("{p}#P"))).await),
            Vec::<String>::new(),
            "a partition key is matched exactly, not as a prefix"
        );
    }

    /// Sort keys order by UTF-8 bytes (not UTF-16, not locale): "Z" < "a" < "é" < "～" < "😀".
    pub async fn query_orders_by_utf8_bytes(store: &dyn ItemStore) {
        let p = prefix();
        let pk = format!("{p}#P");
        let keys = [
            "😀", "a", "～", "Z", "é", "a#", "a#b", "0", "~", "A", "aa", "\u{7f}",
        ];
        for sk in keys {
            ok(store.put(item(&pk, sk, []), None).await, "put");
        }
        let mut expected: Vec<&str> = keys.to_vec();
        expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let forward = sort_keys(&query_all(store, Query::partition(&pk)).await);
        assert_eq!(forward, expected, "ascending");
        expected.reverse();
        let backward = sort_keys(&query_all(store, Query::partition(&pk).backward()).await);
        assert_eq!(backward, expected, "descending");
    }

    /// `limit` plus `last_evaluated`/`start_after` pages through every item exactly once, in
    /// both directions and under a sort-key condition.
    pub async fn query_pagination(store: &dyn ItemStore) {
        let p = prefix();
        let pk = format!("{p}#P");
        let all: Vec<String> = (0..23).map(|i| format!("ITEM#{i:03}")).collect();
        for sk in &all {
            ok(
                store.put(item(&pk, sk, [("n", Value::n(1))]), None).await,
                "put",
            );
        }
        ok(store.put(item(&pk, "OTHER", []), None).await, "put");
        let prefix_condition = SortKeyCondition::BeginsWith("ITEM#".into());
        for limit in [1, 5, 23, 30] {
            let query = Query::partition(&pk)
                .sk(prefix_condition.clone())
                .limit(limit);
            let (pages, forward) = collect_pages(store, query.clone()).await;
            assert_eq!(sort_keys(&forward), all, "forward, limit {limit}");
            assert!(
                pages >= all.len().div_ceil(limit),
                "limit {limit} must cap each page ({pages} pages)"
            );
            let (_, backward) = collect_pages(store, query.backward()).await;
            let reversed: Vec<String> = all.iter().rev().cloned().collect();
            assert_eq!(sort_keys(&backward), reversed, "backward, limit {limit}");
        }
        let first = ok(
            store.query(Query::partition(&pk).limit(3)).await,
            "first page",
        );
        assert_eq!(first.items.len(), 3);
        let last = first
            .last_evaluated
            .clone()
            .expect("more items follow the first page");
        assert_eq!(
            last.str_attr("PK"),
            Some(pk.as_str()),
            "last_evaluated holds PK"
        );
        assert_eq!(
            last.str_attr("SK"),
            first.items[2].str_attr("SK"),
            "last_evaluated is the last item's key"
        );
    }

    /// A query with `limit` 0 or `Between` bounds out of order is refused.
    pub async fn invalid_queries_are_refused(store: &dyn ItemStore) {
        let p = prefix();
        invalid(
            store
                .query(Query::partition(format!("{p}#P")).limit(0))
                .await,
            "limit 0",
        );
        invalid(
            store
                .query(
                    Query::partition(format!("{p}#P"))
                        .sk(SortKeyCondition::Between("b".into(), "a".into())),
                )
                .await,
            "between b and a",
        );
        invalid(
            store.query(Query::partition("")).await,
            "empty partition key",
        );
    }

    // ----------------------------------------------------------------------------------------
    // Secondary indexes

    /// An index holds only items with both its keys, ordered by the index sort key, with the
    /// whole item projected; sort-key conditions apply to the index sort key.
    pub async fn index_query_is_sparse_and_ordered(store: &dyn ItemStore) {
        let p = prefix();
        let g1 = format!("{p}#OPEN");
        let g2 = format!("{p}#DUE");
        let pk = |name: &str| format!("{p}#{name}");
        let gsi1 = |sk: &str| [("GSI1PK", Value::s(&g1)), ("GSI1SK", Value::s(sk))];
        let gsi2 = |sk: &str| [("GSI2PK", Value::s(&g2)), ("GSI2SK", Value::s(sk))];
        let with_payload = {
            let mut a = item(&pk("A"), "X", gsi1("2"));
            a.insert("v".into(), Value::s("a"));
            a
        };
        let mut both = item(&pk("E"), "X", gsi1("3"));
        both.extend(item(&pk("E"), "X", gsi2("2030")));
        let puts = [
            with_payload.clone(),
            item(&pk("B"), "X", gsi1("1")),
            item(&pk("C"), "X", [("GSI1PK", Value::s(&g1))]), // no GSI1SK: not indexed
            item(&pk("D"), "X", [("GSI1SK", Value::s("0"))]), // no GSI1PK: not indexed
            both,
            item(
                &pk("F"),
                "X",
                [
                    ("GSI1PK", Value::s(format!("{g1}X"))),
                    ("GSI1SK", Value::s("1")),
                ],
            ),
            item(&pk("G"), "X", gsi2("2029")),
        ];
        for put in &puts {
            ok(store.put(put.clone(), None).await, "put");
        }
        let gsi1_query = || Query::on_index(Index::Gsi1, &g1);
        let gsi2_query = || Query::on_index(Index::Gsi2, &g2);
        let cases: Vec<(Query, Vec<String>)> = vec![
            (gsi1_query(), vec![pk("B"), pk("A"), pk("E")]),
            (gsi1_query().backward(), vec![pk("E"), pk("A"), pk("B")]),
            (
                gsi1_query().sk(SortKeyCondition::Ge("2".into())),
                vec![pk("A"), pk("E")],
            ),
            (
                gsi1_query().sk(SortKeyCondition::Between("1".into(), "2".into())),
                vec![pk("B"), pk("A")],
            ),
            (gsi2_query(), vec![pk("G"), pk("E")]),
            (
                gsi2_query().sk(SortKeyCondition::BeginsWith("2030".into())),
                vec![pk("E")],
            ),
        ];
        for (query, expected) in cases {
            assert_eq!(
                index_settles(store, &query, &expected).await,
                expected,
                "{query:?}"
            );
        }
        let forward = query_all(store, gsi1_query()).await;
        assert_eq!(
            forward.get(1),
            Some(&with_payload),
            "the index projects the whole item"
        );
    }

    /// Writes keep the index in step: removing GSI1PK by update takes the item out, setting
    /// both keys puts it in, changing GSI1SK moves it, a put without keys or a delete removes it.
    pub async fn index_follows_writes(store: &dyn ItemStore) {
        let p = prefix();
        let g = format!("{p}#IDX");
        let (a_pk, b_pk) = (format!("{p}#A"), format!("{p}#B"));
        let a = item(
            &a_pk,
            "X",
            [("GSI1PK", Value::s(&g)), ("GSI1SK", Value::s("1"))],
        );
        let b = item(
            &b_pk,
            "X",
            [("GSI1PK", Value::s(&g)), ("GSI1SK", Value::s("2"))],
        );
        let index = Query::on_index(Index::Gsi1, &g);
        let expect = |expected: &[&String], why: &str| {
            let expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
            let index = index.clone();
            let why = why.to_string();
            async move {
                assert_eq!(
                    index_settles(store, &index, &expected).await,
                    expected,
                    "{why}"
                );
            }
        };
        ok(store.put(a.clone(), None).await, "put a");
        ok(store.put(b.clone(), None).await, "put b");
        expect(&[&a_pk, &b_pk], "both in the index").await;

        let remove = Update::new().remove("GSI1PK");
        ok(
            store.update(&key_of(&a), remove, None).await,
            "remove GSI1PK",
        );
        expect(&[&b_pk], "removing GSI1PK takes a out").await;

        let set = Update::new()
            .set("GSI1PK", Value::s(&g))
            .set("GSI1SK", Value::s("3"));
        ok(
            store.update(&key_of(&a), set, None).await,
            "set the GSI keys",
        );
        expect(&[&b_pk, &a_pk], "setting both keys puts a back, after b").await;

        let moved = Update::new().set("GSI1SK", Value::s("4"));
        ok(store.update(&key_of(&b), moved, None).await, "move b");
        expect(&[&a_pk, &b_pk], "changing GSI1SK moves b").await;

        ok(
            store.put(key_of(&a).to_item(), None).await,
            "put a without index keys",
        );
        expect(&[&b_pk], "a put without the keys takes a out").await;

        let delete = WriteOp::Delete {
            key: key_of(&b),
            condition: None,
        };
        ok(
            store.transact_write(vec![delete]).await,
            "delete b in a transaction",
        );
        expect(&[], "deleting b takes it out").await;
    }

    /// Index pages give every item once, even when several share an index sort key, and
    /// `last_evaluated` holds the table and index keys.
    pub async fn index_pagination(store: &dyn ItemStore) {
        let p = prefix();
        let g = format!("{p}#IDX");
        let mut want = Vec::new();
        for i in 0..14 {
            let index_sk = format!("DUE#{}", i % 5); // duplicates on purpose
            let it = item(
                &format!("{p}#ITEM{i:02}"),
                "X",
                [("GSI2PK", Value::s(&g)), ("GSI2SK", Value::s(&index_sk))],
            );
            ok(store.put(it, None).await, "put");
            want.push(format!("{p}#ITEM{i:02}"));
        }
        // Wait until the index holds all of them (ties come in no particular order).
        let everything = Query::on_index(Index::Gsi2, &g);
        for attempt in 0..50 {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            if query_all(store, everything.clone()).await.len() == want.len() {
                break;
            }
        }
        for forward in [true, false] {
            for limit in [1, 4, 14] {
                let mut query = Query::on_index(Index::Gsi2, &g).limit(limit);
                query.forward = forward;
                let (_, items) = collect_pages(store, query).await;
                let index_sks: Vec<&str> =
                    items.iter().filter_map(|i| i.str_attr("GSI2SK")).collect();
                let mut sorted = index_sks.clone();
                sorted.sort();
                if !forward {
                    sorted.reverse();
                }
                let case = format!("forward {forward}, limit {limit}");
                assert_eq!(index_sks, sorted, "ordered by GSI2SK ({case})");
                let mut got = partition_keys(&items);
                got.sort();
                assert_eq!(got, want, "every item exactly once ({case})");
            }
        }
        let page = ok(store.query(everything.limit(2)).await, "page");
        let last = page.last_evaluated.expect("more items follow");
        for attr in ["PK", "SK", "GSI2PK", "GSI2SK"] {
            assert!(
                last.str_attr(attr).is_some(),
                "last_evaluated of an index query holds {attr}"
            );
        }
    }

    // ----------------------------------------------------------------------------------------
    // Transactions

    /// Put, update, delete and condition check all apply together.
    pub async fn transaction_applies_every_op_kind(store: &dyn ItemStore) {
        let p = prefix();
        let pk = format!("{p}#P");
        let counter = item(&pk, "COUNTER", [("n", Value::n(1))]);
        let doomed = item(&pk, "DOOMED", []);
        let guard = item(&pk, "GUARD", [("open", Value::Bool(true))]);
        for it in [&counter, &doomed, &guard] {
            ok(store.put(it.clone(), None).await, "put");
        }
        let created = item(&pk, "CREATED", [("v", Value::s("new"))]);
        ok(
            store
                .transact_write(vec![
                    WriteOp::put_if(created.clone(), Condition::item_absent()),
                    WriteOp::Update {
                        key: key_of(&counter),
                        update: Update::new().add("n", 2),
                        condition: Some(Condition::eq("n", Value::n(1))),
                    },
                    WriteOp::Delete {
                        key: key_of(&doomed),
                        condition: Some(Condition::item_present()),
                    },
                    WriteOp::ConditionCheck {
                        key: key_of(&guard),
                        condition: Condition::eq("open", Value::Bool(true)),
                    },
                ])
                .await,
            "transaction",
        );
        assert_eq!(ok(store.get(&key_of(&created)).await, "get"), Some(created));
        let counter_now = ok(store.get(&key_of(&counter)).await, "get");
        assert_eq!(counter_now.and_then(|c| c.i64_attr("n")), Some(3));
        assert_eq!(ok(store.get(&key_of(&doomed)).await, "get"), None);
        assert_eq!(ok(store.get(&key_of(&guard)).await, "get"), Some(guard));
    }

    /// A failing condition on op 3 cancels ops 1-2 too, with one reason per op and the
    /// failed op's ALL_OLD.
    pub async fn transaction_is_all_or_nothing(store: &dyn ItemStore) {
        let p = prefix();
        let pk = format!("{p}#P");
        let existing = item(&pk, "EXISTING", [("n", Value::n(1))]);
        let taken = item(&pk, "TAKEN", [("owner", Value::s("someone"))]);
        ok(store.put(existing.clone(), None).await, "put");
        ok(store.put(taken.clone(), None).await, "put");
        let other = item(&pk, "OTHER", []);
        ok(store.put(other.clone(), None).await, "put");
        let fresh = item(&pk, "FRESH", []);
        let ops = vec![
            WriteOp::put(fresh.clone()),
            WriteOp::Update {
                key: key_of(&existing),
                update: Update::new().add("n", 1),
                condition: None,
            },
            WriteOp::put_if(
                item(&pk, "TAKEN", [("owner", Value::s("me"))]),
                Condition::item_absent(),
            ),
            WriteOp::ConditionCheck {
                key: key_of(&other),
                condition: Condition::item_present(),
            },
            WriteOp::ConditionCheck {
                key: Key::new(&pk, "NOBODY"),
                condition: Condition::item_present(),
            },
        ];
        match store.transact_write(ops).await {
            Err(StoreError::TransactionCanceled { reasons }) => {
                assert_eq!(
                    reasons,
                    vec![
                        None,
                        None,
                        Some(CancelReason::ConditionFailed(Some(taken.clone()))),
                        None,
                        Some(CancelReason::ConditionFailed(None)),
                    ],
                    "one reason per op, ALL_OLD on the failed ones"
                );
            }
            other => panic!("expected TransactionCanceled, got {other:?}"),
        }
        assert_eq!(
            ok(store.get(&key_of(&fresh)).await, "get"),
            None,
            "op 1 not applied"
        );
        assert_eq!(
            ok(store.get(&key_of(&existing)).await, "get"),
            Some(existing),
            "op 2 not applied"
        );
        assert_eq!(
            ok(store.get(&key_of(&taken)).await, "get"),
            Some(taken),
            "op 3 not applied"
        );
    }

    /// The same item twice, more than 100 ops, or none at all: refused, nothing written.
    pub async fn invalid_transactions_are_refused(store: &dyn ItemStore) {
        let p = prefix();
        let pk = format!("{p}#P");
        let twice = vec![
            WriteOp::put(item(&pk, "A", [])),
            WriteOp::Update {
                key: Key::new(&pk, "A"),
                update: Update::new().add("n", 1),
                condition: None,
            },
        ];
        invalid(store.transact_write(twice).await, "same item twice");
        let too_many: Vec<WriteOp> = (0..=MAX_TRANSACTION_ITEMS)
            .map(|i| WriteOp::put(item(&pk, &format!("MANY#{i:03}"), [])))
            .collect();
        invalid(store.transact_write(too_many).await, "101 operations");
        invalid(store.transact_write(vec![]).await, "no operations");
        invalid(
            store
                .transact_write(vec![
                    WriteOp::put(item(&pk, "B", [])),
                    WriteOp::Update {
                        key: Key::new(&pk, "C"),
                        update: Update::new(),
                        condition: None,
                    },
                ])
                .await,
            "an empty update",
        );
        assert!(
            query_all(store, Query::partition(&pk)).await.is_empty(),
            "nothing written"
        );
    }

    /// A transaction may hold exactly 100 operations.
    pub async fn transaction_of_100_ops(store: &dyn ItemStore) {
        let p = prefix();
        let pk = format!("{p}#P");
        let ops: Vec<WriteOp> = (0..MAX_TRANSACTION_ITEMS)
            .map(|i| {
                WriteOp::put_if(
                    item(&pk, &format!("OP#{i:03}"), []),
                    Condition::item_absent(),
                )
            })
            .collect();
        ok(store.transact_write(ops).await, "100 operations");
        assert_eq!(
            query_all(store, Query::partition(&pk)).await.len(),
            MAX_TRANSACTION_ITEMS
        );
    }

    // ----------------------------------------------------------------------------------------
    // Concurrency

    /// 50 concurrent tasks each ADD 1 ten times: the counter ends at exactly 500.
    pub async fn concurrent_adds_are_exact(store: &dyn ItemStore) {
        let p = prefix();
        let key = Key::new(format!("{p}#P"), "COUNTER");
        let tasks = (0..50).map(|_| async {
            for _ in 0..10 {
                ok(
                    store.update(&key, Update::new().add("n", 1), None).await,
                    "add",
                );
            }
        });
        join_all(tasks.collect()).await;
        let counter = ok(store.get(&key).await, "get");
        assert_eq!(counter.and_then(|c| c.i64_attr("n")), Some(500));
    }

    /// 20 concurrent conditional puts of one key: exactly one wins, the others see its item.
    pub async fn concurrent_conditional_puts_have_one_winner(store: &dyn ItemStore) {
        let p = prefix();
        for round in 0..3 {
            let key = Key::new(format!("{p}#P"), format!("ROUND#{round}"));
            let attempts = (0..20).map(|who| {
                let candidate = item(&key.pk, &key.sk, [("who", Value::n(who))]);
                async move {
                    let result = store
                        .put(candidate.clone(), Some(Condition::item_absent()))
                        .await;
                    (candidate, result)
                }
            });
            let results = join_all(attempts.collect()).await;
            let winners: Vec<&Item> = results
                .iter()
                .filter(|(_, r)| r.is_ok())
                .map(|(candidate, _)| candidate)
                .collect();
            assert_eq!(
                winners.len(),
                1,
                "exactly one conditional put wins (round {round})"
            );
            let stored = ok(store.get(&key).await, "get");
            assert_eq!(
                stored.as_ref(),
                Some(winners[0]),
                "the winner's item is stored"
            );
            for (_, result) in &results {
                match result {
                    Ok(()) => {}
                    Err(StoreError::ConditionFailed { old }) => {
                        assert_eq!(
                            old.as_deref(),
                            Some(winners[0]),
                            "losers see the winner's item"
                        );
                    }
                    Err(e) => panic!("unexpected error {e:?}"),
                }
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // Helpers

    // ----------------------------------------------------------------------------------------
    // Idempotency records (Powertools protocol) on this store

    fn idempotency_tenant() -> crate::ids::TenantId {
        let id = ulid::Ulid::new().to_string().to_lowercase();
        crate::ids::TenantId::parse(&format!("idem-{}", &id[..20])).expect("valid tenant id")
    }

    /// A claimed effect runs once: a second claim waits, a completed one returns its result,
    /// and an expired record can be claimed again.
    pub async fn idempotency_runs_an_effect_once(store: &dyn ItemStore) {
        use crate::idempotency::{Begin, IdempotencyConfig, begin, complete};
        let tenant = idempotency_tenant();
        let config = IdempotencyConfig::default();
        let now = chrono::Utc::now();
        assert_eq!(
            begin(store, &tenant, "send", now, config).await.unwrap(),
            Begin::Started
        );
        assert_eq!(
            begin(store, &tenant, "send", now, config).await.unwrap(),
            Begin::InProgress
        );
        let result = serde_json::json!({"message_id": "m-1"});
        complete(store, &tenant, "send", &result).await.unwrap();
        assert_eq!(
            begin(store, &tenant, "send", now, config).await.unwrap(),
            Begin::AlreadyCompleted(result)
        );
        // TTL deletes lazily: past `expires_at` the record no longer counts.
        let later = now + config.remember_for + chrono::Duration::seconds(1);
        assert_eq!(
            begin(store, &tenant, "send", later, config).await.unwrap(),
            Begin::Started
        );
        // Keys are independent.
        assert_eq!(
            begin(store, &tenant, "other", now, config).await.unwrap(),
            Begin::Started
        );
    }

    /// A claim whose holder timed out, or that was released after a failure, can be taken.
    pub async fn idempotency_reclaims_timed_out_and_released_claims(store: &dyn ItemStore) {
        use crate::idempotency::{Begin, IdempotencyConfig, begin, release};
        let tenant = idempotency_tenant();
        let config = IdempotencyConfig::default();
        let now = chrono::Utc::now();
        assert_eq!(
            begin(store, &tenant, "k", now, config).await.unwrap(),
            Begin::Started
        );
        let within = now + config.in_progress_timeout - chrono::Duration::seconds(1);
        assert_eq!(
            begin(store, &tenant, "k", within, config).await.unwrap(),
            Begin::InProgress
        );
        let after = now + config.in_progress_timeout + chrono::Duration::seconds(1);
        assert_eq!(
            begin(store, &tenant, "k", after, config).await.unwrap(),
            Begin::Started
        );
        release(store, &tenant, "k").await.unwrap();
        assert_eq!(
            begin(store, &tenant, "k", after, config).await.unwrap(),
            Begin::Started
        );
    }

    /// A fresh tenant-like prefix, so every test call writes to keys of its own.
    fn prefix() -> String {
        format!("T#conf-{}", ulid::Ulid::new().to_string().to_lowercase())
    }

    fn item<'a>(pk: &str, sk: &str, attrs: impl IntoIterator<Item = (&'a str, Value)>) -> Item {
        let mut item = Key::new(pk, sk).to_item();
        for (name, value) in attrs {
            item.insert(name.to_string(), value);
        }
        item
    }

    fn key_of(item: &Item) -> Key {
        item.key().expect("test items have keys")
    }

    fn ok<T>(result: Result<T, StoreError>, what: &str) -> T {
        match result {
            Ok(value) => value,
            Err(e) => panic!("{what}: unexpected error {e:?}"),
        }
    }

    /// Asserts a single-item condition failure and returns its ALL_OLD.
    fn condition_failed<T: std::fmt::Debug>(
        result: Result<T, StoreError>,
        what: &str,
    ) -> Option<Item> {
        match result {
            Err(StoreError::ConditionFailed { old }) => old.map(|b| *b),
            other => panic!("{what}: expected ConditionFailed, got {other:?}"),
        }
    }

    fn invalid<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
        match result {
            Err(StoreError::Invalid(_)) => {}
            other => panic!("{what}: expected Invalid, got {other:?}"),
        }
    }

    /// Whether `condition` holds on the stored `target`, by re-putting the same item under it.
    async fn holds(store: &dyn ItemStore, target: &Item, condition: Condition) -> bool {
        match store.put(target.clone(), Some(condition.clone())).await {
            Ok(()) => true,
            Err(StoreError::ConditionFailed { old }) => {
                assert_eq!(old.as_deref(), Some(target), "ALL_OLD of {condition:?}");
                false
            }
            Err(e) => panic!("put with {condition:?}: unexpected error {e:?}"),
        }
    }

    async fn query_all(store: &dyn ItemStore, query: Query) -> Vec<Item> {
        collect_pages(store, query).await.1
    }

    /// Follows `last_evaluated` to the end; returns the page count and every item.
    async fn collect_pages(store: &dyn ItemStore, query: Query) -> (usize, Vec<Item>) {
        let mut items = Vec::new();
        let mut start = None;
        for pages in 1..=1000 {
            let Page {
                items: page,
                last_evaluated,
            } = ok(
                store.query(query.clone().start_after(start.take())).await,
                "query",
            );
            if let Some(limit) = query.limit {
                assert!(page.len() <= limit, "a page holds at most `limit` items");
            }
            items.extend(page);
            match last_evaluated {
                Some(last) => start = Some(last),
                None => return (pages, items),
            }
        }
        panic!("pagination did not end after 1000 pages");
    }

    /// The partition keys `query` returns, once they are `expected`: DynamoDB updates indexes
    /// asynchronously, so this asks again for up to 5 s. Returns what it saw last.
    async fn index_settles(
        store: &dyn ItemStore,
        query: &Query,
        expected: &[String],
    ) -> Vec<String> {
        let mut seen = Vec::new();
        for attempt in 0..50 {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            seen = partition_keys(&query_all(store, query.clone()).await);
            if seen == expected {
                break;
            }
        }
        seen
    }

    fn sort_keys(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .filter_map(|i| i.str_attr("SK").map(String::from))
            .collect()
    }

    fn partition_keys(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .filter_map(|i| i.str_attr("PK").map(String::from))
            .collect()
    }

    fn decimal_value(value: &Value) -> Option<f64> {
        match value {
            Value::N(n) => n.parse().ok(),
            _ => None,
        }
    }

    /// Polls all futures in this task until every one is done (no `futures` crate, no
    /// `'static` bound, so tests can borrow the store). Adapters do their I/O elsewhere
    /// (threads, sockets), so the requests really are in flight together.
    async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
        let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
        let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
        poll_fn(|cx| {
            let mut pending = false;
            for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
                if output.is_none() {
                    match future.as_mut().poll(cx) {
                        Poll::Ready(value) => *output = Some(value),
                        Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        outputs.into_iter().flatten().collect()
    }

    /// Turns a panic inside a test future into an `Err`, so `run_all` can go on.
    struct CatchUnwind<'a>(Pin<Box<dyn Future<Output = ()> + Send + 'a>>);

    impl Future for CatchUnwind<'_> {
        type Output = Result<(), Box<dyn std::any::Any + Send>>;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let future = self.0.as_mut();
            match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                Ok(Poll::Pending) => Poll::Pending,
                Ok(Poll::Ready(())) => Poll::Ready(Ok(())),
                Err(panic) => Poll::Ready(Err(panic)),
            }
        }
    }

    fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
        if let Some(s) = panic.downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = panic.downcast_ref::<String>() {
            s.clone()
        } else {
            "panicked".to_string()
        }
    }
}

/// Every test name of the store suite, handed to `$callback!{ (args) name, ... }`. The one
/// list behind both `store::TESTS` and `store_conformance_tests!`.
#[macro_export]
#[doc(hidden)]
macro_rules! __store_conformance_names {
    ($callback:ident ! ($($args:tt)*)) => {
        $callback! { ($($args)*)
            round_trip_every_value_type,
            get_missing_item_is_none,
            put_replaces_whole_item,
            conditional_put_if_absent,
            invalid_keys_are_refused,
            index_keys_must_be_strings,
            item_size_limit,
            odd_attribute_names,
            ttl_attribute_is_kept,
            condition_comparisons,
            condition_combinators,
            update_set_and_remove,
            update_set_if_not_exists,
            update_add,
            update_creates_missing_item,
            conditional_update_failure,
            invalid_updates_are_refused,
            delete_with_and_without_condition,
            query_sort_key_conditions,
            query_orders_by_utf8_bytes,
            query_pagination,
            invalid_queries_are_refused,
            index_query_is_sparse_and_ordered,
            index_follows_writes,
            index_pagination,
            transaction_applies_every_op_kind,
            transaction_is_all_or_nothing,
            invalid_transactions_are_refused,
            transaction_of_100_ops,
            concurrent_adds_are_exact,
            concurrent_conditional_puts_have_one_winner,
            idempotency_runs_an_effect_once,
            idempotency_reclaims_timed_out_and_released_claims,
        }
    };
}

/// Generates one `#[tokio::test]` (multi-threaded) per store conformance test, in a module
/// `store_conformance`. `$make` is evaluated once per test, inside an async fn (so it may
/// `.await`), and must give a value whose type implements `ItemStore`. The calling crate needs
/// `tokio` (with `macros` and `rt-multi-thread`) as a dev-dependency.
///
/// Tests a backend cannot pass for a known, documented reason (an emulator's gap, say) can be
/// generated as `#[ignore]`d, with the reason shown by the test runner:
///
/// ```ignore
/// closedloop_core::store_conformance_tests!(fresh_store().await;
///     ignore [concurrent_adds_are_exact] because "the emulator has no per-item lock");
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!($make; ignore [] because "");
    };
    ($make:expr; ignore [$($skip:ident),* $(,)?] because $reason:literal) => {
        mod store_conformance {
            #[allow(unused_imports)]
            use super::*;
            $crate::__store_conformance_module! { ($make) ($reason) [$($skip),*] $ }
        }
    };
}

/// Defines, inside the generated module, one macro that turns a test name into a test fn
/// (ignored when listed) and feeds it every name. `$d` is a literal `$`, so the macros
/// defined here can have metavariables of their own.
#[macro_export]
#[doc(hidden)]
macro_rules! __store_conformance_module {
    (($make:expr) ($reason:literal) [$($skip:ident),*] $d:tt) => {
        macro_rules! __store_conformance_test {
            $(
                ($skip) => {
                    #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    #[ignore = $reason]
                    async fn $skip() {
                        let store = $make;
                        $crate::conformance::store::$skip(&store).await;
                    }
                };
            )*
            ($d name:ident) => {
                #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $d name() {
                    let store = $make;
                    $crate::conformance::store::$d name(&store).await;
                }
            };
        }
        macro_rules! __store_conformance_all {
            (() $d ($d name:ident),* $d (,)?) => {
                $d ( __store_conformance_test!($d name); )*
            };
        }
        $crate::__store_conformance_names!(__store_conformance_all!());
    };
}
