//! The compiled rules of a tenant, indexed so an event is checked only against the rules that
//! can match it.
//!
//! Per trigger, each enabled rule whose top group is `all` and holds an equality test (`is`,
//! `is_any_of`, tags `contains`) on a choice, id, text, number or boolean field is filed under
//! that test's values; of several, the one whose values are shared by the fewest rules (the most
//! selective). An event looks its facts up in those buckets, adds the rules that have no such
//! test, and evaluates only those. The filed condition is checked first, so for a rule that was
//! not looked up it is the condition that failed. The rest are checked in the order written.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value as Json, json};

use super::facts::{Fact, Facts};
use super::model::{
    Combinator, Condition, ConditionGroup, ConditionNode, Field, FieldKind, Op, Operand, Rule,
    Trigger,
};
use super::parse::{compile_regex, operand_json};

#[derive(Debug)]
enum Test {
    TextIs(String),
    TextContains(String),
    TextAnyOf(Vec<String>),
    TextMatches(regex_lite::Regex),
    NumberIs(f64),
    NumberAnyOf(Vec<f64>),
    GreaterThan(f64),
    LessThan(f64),
    Between(f64, f64),
    BoolIs(bool),
    ListContains(String),
    ListAnyOf(Vec<String>),
    IsSet,
}

#[derive(Debug)]
struct CompiledCondition {
    field: Field,
    test: Test,
    /// `is_not`, `not_contains`, `is_not_set`: the test's answer inverted.
    negated: bool,
    /// Where it sits in the rule (`conditions.all[1]`), for the audit trail.
    path: String,
    source: Condition,
}

impl CompiledCondition {
    fn compile(c: &Condition, path: String) -> CompiledCondition {
        let lower = |s: &str| s.trim().to_lowercase();
        let list_field = matches!(c.field.kind(), FieldKind::Tags | FieldKind::AgentHours);
        let (test, negated) = match (&c.op, &c.value) {
            (Op::IsSet, _) => (Test::IsSet, false),
            (Op::IsNotSet, _) => (Test::IsSet, true),
            (Op::Is | Op::IsNot, Operand::Text(s)) if list_field => {
                (Test::ListContains(lower(s)), c.op == Op::IsNot)
            }
            (Op::Is | Op::IsNot, Operand::Text(s)) => (Test::TextIs(lower(s)), c.op == Op::IsNot),
            (Op::Is | Op::IsNot, Operand::Number(n)) => (Test::NumberIs(*n), c.op == Op::IsNot),
            (Op::Is | Op::IsNot, Operand::Bool(b)) => (Test::BoolIs(*b), c.op == Op::IsNot),
            (Op::Contains | Op::NotContains, Operand::Text(s)) if list_field => {
                (Test::ListContains(lower(s)), c.op == Op::NotContains)
            }
            (Op::Contains | Op::NotContains, Operand::Text(s)) => {
                (Test::TextContains(lower(s)), c.op == Op::NotContains)
            }
            (Op::IsAnyOf, Operand::Texts(v)) if list_field => {
                (Test::ListAnyOf(v.iter().map(|s| lower(s)).collect()), false)
            }
            (Op::IsAnyOf, Operand::Texts(v)) => {
                (Test::TextAnyOf(v.iter().map(|s| lower(s)).collect()), false)
            }
            (Op::IsAnyOf, Operand::Numbers(v)) => (Test::NumberAnyOf(v.clone()), false),
            (Op::GreaterThan, Operand::Number(n)) => (Test::GreaterThan(*n), false),
            (Op::LessThan, Operand::Number(n)) => (Test::LessThan(*n), false),
            (Op::Between, Operand::Range(a, b)) => (Test::Between(*a, *b), false),
            (Op::Matches, Operand::Text(p)) => (
                Test::TextMatches(compile_regex(p).expect("patterns are checked when saved")),
                false,
            ),
            // Parsing pairs every operator with its operand; nothing else is constructed.
            (op, value) => unreachable!("{op:?} with {value:?}"),
        };
        CompiledCondition {
            field: c.field,
            test,
            negated,
            path,
            source: c.clone(),
        }
    }

    /// A missing value fails every test, so `is_not`, `not_contains` and `is_not_set` hold.
    fn holds(&self, facts: &Facts) -> bool {
        let fact = facts.get(self.field);
        let positive = match (fact, &self.test) {
            (None, _) => false,
            (Some(Fact::List(items)), Test::IsSet) => !items.is_empty(),
            (Some(_), Test::IsSet) => true,
            (Some(Fact::Text { lower, .. }), Test::TextIs(v)) => lower == v,
            (Some(Fact::Text { lower, .. }), Test::TextContains(v)) => lower.contains(v.as_str()),
            (Some(Fact::Text { lower, .. }), Test::TextAnyOf(vs)) => vs.iter().any(|v| v == lower),
            (Some(Fact::Text { original, .. }), Test::TextMatches(re)) => re.is_match(original),
            (Some(Fact::Number(n)), Test::NumberIs(v)) => n == v,
            (Some(Fact::Number(n)), Test::NumberAnyOf(vs)) => vs.contains(n),
            (Some(Fact::Number(n)), Test::GreaterThan(v)) => n > v,
            (Some(Fact::Number(n)), Test::LessThan(v)) => n < v,
            (Some(Fact::Number(n)), Test::Between(a, b)) => a <= n && n <= b,
            (Some(Fact::Bool(b)), Test::BoolIs(v)) => b == v,
            (Some(Fact::List(items)), Test::ListContains(v)) => items.contains(v),
            (Some(Fact::List(items)), Test::ListAnyOf(vs)) => vs.iter().any(|v| items.contains(v)),
            _ => false,
        };
        positive != self.negated
    }

    /// The bucket keys of an equality test, if it can be indexed.
    fn index_keys(&self) -> Option<Vec<String>> {
        if self.negated {
            return None;
        }
        match &self.test {
            Test::TextIs(v) | Test::ListContains(v) => Some(vec![v.clone()]),
            Test::TextAnyOf(vs) | Test::ListAnyOf(vs) => Some(vs.clone()),
            Test::NumberIs(n) => Some(vec![number_key(*n)]),
            Test::NumberAnyOf(ns) => Some(ns.iter().map(|n| number_key(*n)).collect()),
            Test::BoolIs(b) => Some(vec![b.to_string()]),
            _ => None,
        }
    }
}

fn number_key(n: f64) -> String {
    // + 0.0 turns -0 into 0, which compares equal and must file the same.
    format!("{}", n + 0.0)
}

/// Calls `f` with each key a fact is looked up under (the normalisation of `index_keys`).
fn for_each_key(fact: &Fact, mut f: impl FnMut(&str)) {
    match fact {
        Fact::Text { lower, .. } => f(lower),
        Fact::Number(n) => f(&number_key(*n)),
        Fact::Bool(b) => f(if *b { "true" } else { "false" }),
        Fact::List(items) => items.iter().for_each(|i| f(i)),
    }
}

#[derive(Debug)]
enum Node {
    Condition(usize),
    Group {
        combinator: Combinator,
        items: Vec<Node>,
        /// Index into the rule's group paths.
        group: usize,
    },
}

#[derive(Debug)]
struct CompiledRule {
    rule: Arc<Rule>,
    conditions: Vec<CompiledCondition>,
    /// Where each group sits (`conditions.all[2]`), for the audit trail.
    groups: Vec<String>,
    root: Node,
    /// The condition the rule is filed under, checked first.
    indexed: Option<usize>,
}

/// Why a rule did not match.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// This condition (index into the rule's conditions) did not hold.
    Condition(usize),
    /// No item of this `any` group (index into the rule's groups) held.
    NoneOf { group: usize },
}

fn compile_group(
    group: &ConditionGroup,
    path: &str,
    out: &mut Vec<CompiledCondition>,
    groups: &mut Vec<String>,
) -> Node {
    groups.push(path.to_string());
    let group_index = groups.len() - 1;
    let key = match group.combinator {
        Combinator::All => "all",
        Combinator::Any => "any",
    };
    let items = group
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let item_path = format!("{path}.{key}[{i}]");
            match item {
                ConditionNode::Condition(c) => {
                    out.push(CompiledCondition::compile(c, item_path));
                    Node::Condition(out.len() - 1)
                }
                ConditionNode::Group(g) => compile_group(g, &item_path, out, groups),
            }
        })
        .collect();
    Node::Group {
        combinator: group.combinator,
        items,
        group: group_index,
    }
}

impl CompiledRule {
    /// The first reason the rule fails, or `None` when it matches.
    fn check(&self, facts: &Facts) -> Option<Failure> {
        if let Some(i) = self.indexed
            && !self.conditions[i].holds(facts)
        {
            return Some(Failure::Condition(i));
        }
        self.check_node(&self.root, facts)
    }

    /// `check_node(..).is_none()`, without building a failure.
    fn holds(&self, node: &Node, facts: &Facts) -> bool {
        match node {
            Node::Condition(i) => self.conditions[*i].holds(facts),
            Node::Group {
                combinator: Combinator::All,
                items,
                ..
            } => items.iter().all(|item| match item {
                Node::Condition(i) if Some(*i) == self.indexed => true,
                _ => self.holds(item, facts),
            }),
            Node::Group {
                combinator: Combinator::Any,
                items,
                ..
            } => items.is_empty() || items.iter().any(|i| self.holds(i, facts)),
        }
    }

    fn check_node(&self, node: &Node, facts: &Facts) -> Option<Failure> {
        match node {
            Node::Condition(i) => {
                (!self.conditions[*i].holds(facts)).then_some(Failure::Condition(*i))
            }
            Node::Group {
                combinator: Combinator::All,
                items,
                ..
            } => items.iter().find_map(|item| match item {
                Node::Condition(i) if Some(*i) == self.indexed => None,
                _ => self.check_node(item, facts),
            }),
            Node::Group {
                combinator: Combinator::Any,
                items,
                group,
            } => {
                if items.is_empty() || items.iter().any(|i| self.holds(i, facts)) {
                    None
                } else {
                    Some(Failure::NoneOf { group: *group })
                }
            }
        }
    }
}

#[derive(Debug, Default)]
struct TriggerIndex {
    /// Bucket lists of rule positions, per field, per key.
    buckets: Vec<(Field, HashMap<String, Vec<u32>>)>,
    /// Enabled rules with no indexable condition: always evaluated.
    scanned: Vec<u32>,
    /// Every enabled rule of the trigger, in rule order.
    enabled: Vec<u32>,
}

/// A tenant's rules, compiled and indexed by trigger. Cheap to share (`Arc`) across events.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<CompiledRule>,
    triggers: HashMap<Trigger, TriggerIndex>,
    fields_read: HashMap<Trigger, Vec<Field>>,
}

/// The outcome of an event against a rule set: which rules matched, and why the evaluated
/// others failed. Rules not looked up failed on their filed condition.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Evaluation {
    /// Rule positions, in rule order.
    pub matched: Vec<usize>,
    pub failed: Vec<(usize, Failure)>,
}

/// One rule's outcome, as the audit trail records it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RuleOutcome {
    pub rule_id: crate::ids::RuleId,
    pub rule_name: String,
    pub rule_version: u64,
    pub matched: bool,
    /// For a rule that did not match: the first condition that failed, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<Json>,
}

impl RuleSet {
    /// Compiles rules (disabled ones are kept for lookups but never evaluated). Rules are
    /// evaluated in creation order.
    pub fn compile(rules: impl IntoIterator<Item = Rule>) -> RuleSet {
        let mut rules: Vec<Arc<Rule>> = rules.into_iter().map(Arc::new).collect();
        rules.sort_by_key(|r| (r.created_at, r.id));
        let mut compiled: Vec<CompiledRule> = rules
            .into_iter()
            .map(|rule| {
                let (mut conditions, mut groups) = (Vec::new(), Vec::new());
                let root =
                    compile_group(&rule.conditions, "conditions", &mut conditions, &mut groups);
                CompiledRule {
                    rule,
                    conditions,
                    groups,
                    root,
                    indexed: None,
                }
            })
            .collect();

        // How many rules share each (trigger, field, key): the fewer, the more selective.
        let candidates = |r: &CompiledRule| -> Vec<(usize, Vec<String>)> {
            let Node::Group {
                combinator: Combinator::All,
                items,
                ..
            } = &r.root
            else {
                return Vec::new();
            };
            items
                .iter()
                .filter_map(|n| match n {
                    Node::Condition(i) => r.conditions[*i].index_keys().map(|k| (*i, k)),
                    _ => None,
                })
                .collect()
        };
        let mut shared: HashMap<(Trigger, Field, String), usize> = HashMap::new();
        for r in compiled.iter().filter(|r| r.rule.enabled) {
            for (i, keys) in candidates(r) {
                for key in keys {
                    *shared
                        .entry((r.rule.trigger, r.conditions[i].field, key))
                        .or_default() += 1;
                }
            }
        }
        let mut set = RuleSet::default();
        for (position, r) in compiled.iter_mut().enumerate() {
            let mut read: Vec<Field> = r.conditions.iter().map(|c| c.field).collect();
            let entry = set.fields_read.entry(r.rule.trigger).or_default();
            if r.rule.enabled {
                entry.append(&mut read);
            }
            if !r.rule.enabled {
                continue;
            }
            let index = set.triggers.entry(r.rule.trigger).or_default();
            index.enabled.push(position as u32);
            let best = candidates(r).into_iter().min_by_key(|(i, keys)| {
                keys.iter()
                    .map(|k| shared[&(r.rule.trigger, r.conditions[*i].field, k.clone())])
                    .sum::<usize>()
            });
            match best {
                Some((i, keys)) => {
                    r.indexed = Some(i);
                    let field = r.conditions[i].field;
                    let slot = match index.buckets.iter().position(|(f, _)| *f == field) {
                        Some(s) => s,
                        None => {
                            index.buckets.push((field, HashMap::new()));
                            index.buckets.len() - 1
                        }
                    };
                    for key in keys {
                        let bucket = index.buckets[slot].1.entry(key).or_default();
                        if bucket.last() != Some(&(position as u32)) {
                            bucket.push(position as u32);
                        }
                    }
                }
                None => index.scanned.push(position as u32),
            }
        }
        for fields in set.fields_read.values_mut() {
            fields.sort();
            fields.dedup();
        }
        set.rules = compiled;
        set
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
    pub fn rule(&self, position: usize) -> &Arc<Rule> {
        &self.rules[position].rule
    }
    /// The enabled rules of a trigger, in rule order.
    pub fn enabled(&self, trigger: Trigger) -> impl Iterator<Item = &Arc<Rule>> {
        self.triggers
            .get(&trigger)
            .into_iter()
            .flat_map(|t| t.enabled.iter())
            .map(|&p| &self.rules[p as usize].rule)
    }

    pub fn has_trigger(&self, trigger: Trigger) -> bool {
        self.triggers
            .get(&trigger)
            .is_some_and(|t| !t.enabled.is_empty())
    }

    /// Whether an enabled rule of `trigger` reads `field`, so callers look up only what is used
    /// (an account's flag, agents' working hours).
    pub fn reads(&self, trigger: Trigger, field: Field) -> bool {
        self.fields_read
            .get(&trigger)
            .is_some_and(|f| f.binary_search(&field).is_ok())
    }

    /// Which enabled rules of `trigger` match `facts`.
    pub fn evaluate(&self, trigger: Trigger, facts: &Facts) -> Evaluation {
        let Some(index) = self.triggers.get(&trigger) else {
            return Evaluation::default();
        };
        let mut candidates: Vec<u32> = index.scanned.clone();
        for (field, buckets) in &index.buckets {
            let Some(fact) = facts.get(*field) else {
                continue;
            };
            for_each_key(fact, |key| {
                if let Some(bucket) = buckets.get(key) {
                    candidates.extend_from_slice(bucket);
                }
            });
        }
        candidates.sort_unstable();
        candidates.dedup();
        let mut evaluation = Evaluation {
            matched: Vec::new(),
            failed: Vec::with_capacity(candidates.len()),
        };
        for position in candidates {
            let position = position as usize;
            match self.rules[position].check(facts) {
                None => evaluation.matched.push(position),
                Some(failure) => evaluation.failed.push((position, failure)),
            }
        }
        evaluation
    }

    /// Every enabled rule of the trigger with its outcome, for the audit trail.
    pub fn explain(
        &self,
        trigger: Trigger,
        facts: &Facts,
        evaluation: &Evaluation,
    ) -> Vec<RuleOutcome> {
        let Some(index) = self.triggers.get(&trigger) else {
            return Vec::new();
        };
        index
            .enabled
            .iter()
            .map(|&position| {
                let position = position as usize;
                let r = &self.rules[position];
                let failure = if evaluation.matched.binary_search(&position).is_ok() {
                    None
                } else {
                    let failure = evaluation
                        .failed
                        .iter()
                        .find(|(p, _)| *p == position)
                        .map(|(_, f)| f.clone())
                        .or_else(|| r.indexed.map(Failure::Condition))
                        .unwrap_or_else(|| r.check(facts).unwrap_or(Failure::NoneOf { group: 0 }));
                    Some(self.describe(position, &failure, facts))
                };
                RuleOutcome {
                    rule_id: r.rule.id,
                    rule_name: r.rule.name.clone(),
                    rule_version: r.rule.version,
                    matched: failure.is_none(),
                    failed: failure,
                }
            })
            .collect()
    }

    /// Why a rule failed, for people: the condition, what it wanted, what the event had.
    pub fn describe(&self, position: usize, failure: &Failure, facts: &Facts) -> Json {
        let r = &self.rules[position];
        match failure {
            Failure::Condition(i) => {
                let c = &r.conditions[*i];
                let actual = facts.get(c.field);
                let actual_json = actual.map(fact_json).unwrap_or(Json::Null);
                let wanted = operand_json(&c.source.value);
                let reason = match actual {
                    None => format!("{} is not set", c.field.as_str()),
                    Some(_) => format!(
                        "{} is {}, which fails '{}{}'",
                        c.field.as_str(),
                        actual_json,
                        c.source.op.as_str(),
                        if wanted.is_null() {
                            String::new()
                        } else {
                            format!(" {wanted}")
                        }
                    ),
                };
                json!({
                    "path": c.path,
                    "field": c.field.as_str(),
                    "op": c.source.op.as_str(),
                    "value": wanted,
                    "actual": actual_json,
                    "reason": reason,
                })
            }
            Failure::NoneOf { group } => json!({
                "path": r.groups[*group],
                "reason": "none of the group's conditions held",
            }),
        }
    }
}

fn fact_json(f: &Fact) -> Json {
    match f {
        Fact::Text { original, .. } => json!(original),
        Fact::Number(n) => json!(n),
        Fact::Bool(b) => json!(b),
        Fact::List(v) => json!(v),
    }
}
