//! Message templates. Tenants will edit these, so they run in minijinja's sandbox: no file or
//! environment access, HTML auto-escaped.

use minijinja::{AutoEscape, Environment};
use serde::Serialize;

use crate::keys;

pub const RATING_REQUEST_SUBJECT: &str = r#"How did we do with "{{ ticket.subject }}"?"#;

pub const RATING_REQUEST_TEXT: &str = r#"Hi {{ contact.name }},

{{ agent_name }} recently worked on your request "{{ ticket.subject }}" (#{{ ticket.id }}).
How did we do? One click is enough:

{% for choice in choices %}  {{ choice.label }}: {{ choice.url }}
{% endfor %}
Thank you,
{{ brand.name }}

Don't want these emails? Unsubscribe: {{ unsubscribe_url }}
"#;

pub const RATING_REQUEST_HTML: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{ brand.name }}</title></head>
<body style="margin:0;padding:0;background:#f4f5f7;font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;color:#1f2937">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="background:#f4f5f7;padding:24px 0"><tr><td align="center">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="max-width:560px;background:#ffffff;border-radius:8px;overflow:hidden">
<tr><td style="background:{{ brand.color }};padding:16px 24px;color:#ffffff;font-size:18px;font-weight:600">{{ brand.name }}</td></tr>
<tr><td style="padding:24px">
<p style="margin:0 0 12px">Hi {{ contact.name }},</p>
<p style="margin:0 0 20px">{{ agent_name }} recently worked on your request <strong>{{ ticket.subject }}</strong> (#{{ ticket.id }}). How did we do?</p>
<table role="presentation" cellpadding="0" cellspacing="0" width="100%"><tr>
{% for choice in choices %}<td align="center" style="padding:4px"><a href="{{ choice.url }}" style="display:block;padding:12px 6px;border-radius:6px;background:{{ choice.color }};color:#ffffff;text-decoration:none;font-weight:600">{{ choice.label }}</a></td>
{% endfor %}</tr></table>
<p style="margin:20px 0 0;font-size:13px;color:#6b7280">One click records your answer. You can add a comment on the next page.</p>
</td></tr>
<tr><td style="padding:16px 24px;font-size:12px;color:#6b7280">You received this because you contacted {{ brand.name }}. <a href="{{ unsubscribe_url }}" style="color:#6b7280">Unsubscribe</a> from rating requests.</td></tr>
</table></td></tr></table></body></html>
"#;

#[derive(Debug, thiserror::Error)]
#[error("template '{name}' failed: {reason}")]
pub struct TemplateError {
    pub name: String,
    pub reason: String,
}

/// A rendered email body set.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedEmail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Template work allowed per render: plenty for an email, but a tenant's endless loop stops.
const FUEL: u64 = 50_000;
/// Largest template source a tenant may store, per part.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;
/// Largest rendered part: an email body several times the default's size, far below what
/// would strain a mail server or the function's memory.
pub const MAX_RENDERED_BYTES: usize = 256 * 1024;

/// The blocks a tenant's template may use. The others either reach other templates
/// (`include`, `import`, `extends`, which find nothing anyway: there is no loader) or capture
/// output into a value that can be reused (`set`, `macro`, `call`, `filter`), which is how a
/// short template doubles a string forty times without running out of fuel.
const BLOCKS: [&str; 8] = [
    "if", "elif", "else", "endif", "for", "endfor", "raw", "endraw",
];
/// Filters that never make a value much longer than its input (`safe` is left out: it would
/// let customer text through unescaped).
const FILTERS: [&str; 17] = [
    "abs",
    "capitalize",
    "count",
    "d",
    "default",
    "e",
    "escape",
    "first",
    "float",
    "int",
    "last",
    "length",
    "lower",
    "round",
    "title",
    "trim",
    "upper",
];
/// Functions a template may call.
const FUNCTIONS: [&str; 1] = ["range"];
/// Words that may stand before `(` without calling anything.
const KEYWORDS: [&str; 7] = ["and", "or", "not", "in", "is", "if", "else"];

/// Refuses what the sandbox cannot bound by fuel alone: minijinja counts instructions, not
/// bytes, so a handful of instructions that concatenate, repeat or capture strings could fill
/// the memory. Reads the template with minijinja's own lexer, so it sees what the parser sees.
// `SyntaxConfig` is a unit struct until minijinja's `custom_syntax` feature is on; `default()`
// keeps this right either way.
#[allow(clippy::default_constructed_unit_structs)]
fn screen(source: &str) -> Result<(), String> {
    use minijinja::machinery::{Token, WhitespaceConfig, tokenize};
    use minijinja::syntax::SyntaxConfig;
    let allowed = |list: &[&str]| list.join(", ");
    let mut prev: [Option<Token<'_>>; 2] = [None, None];
    for token in tokenize(
        source,
        false,
        SyntaxConfig::default(),
        WhitespaceConfig::default(),
    ) {
        // A lexing error is the parser's to report, with its position.
        let Ok((token, span)) = token else {
            return Ok(());
        };
        let at = format!("line {}", span.start_line);
        match (&token, &prev[1], &prev[0]) {
            (Token::Plus | Token::Tilde | Token::Mul | Token::Pow, _, _) => {
                return Err(format!(
                    "{token} is not available in templates ({at}): write {{{{ a }}}}{{{{ b }}}} to put values side by side"
                ));
            }
            (Token::Ident("recursive"), _, _) => {
                return Err(format!(
                    "recursive loops are not available in templates ({at})"
                ));
            }
            (Token::Ident(name), Some(Token::BlockStart), _) if !BLOCKS.contains(name) => {
                return Err(format!(
                    "{{% {name} %}} is not available in templates ({at}); they may use {}",
                    allowed(&BLOCKS)
                ));
            }
            (Token::Ident(name), Some(Token::Pipe), _) if !FILTERS.contains(name) => {
                return Err(format!(
                    "the filter '{name}' is not available in templates ({at}); they may use {}",
                    allowed(&FILTERS)
                ));
            }
            (Token::ParenOpen, Some(Token::Ident(name)), before)
                if !matches!(
                    before,
                    Some(Token::Dot | Token::Pipe | Token::Ident("is" | "not"))
                ) && !KEYWORDS.contains(name)
                    && !FUNCTIONS.contains(name) =>
            {
                return Err(format!(
                    "the function '{name}' is not available in templates ({at}); they may call {}",
                    allowed(&FUNCTIONS)
                ));
            }
            _ => {}
        }
        prev = [prev[1].take(), Some(token)];
    }
    Ok(())
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(FUEL));
    // No loader, and no `include`/`import`/`extends` in the language (the workspace leaves out
    // minijinja's multi_template feature): a template is the one source it is given.
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    // Lists and maps are printed whole, in memory, before a byte is written: a template
    // prints values one at a time.
    env.set_formatter(|out, state, value| {
        use minijinja::value::ValueKind;
        match value.kind() {
            ValueKind::Seq | ValueKind::Map | ValueKind::Iterable | ValueKind::Plain => {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    "a template prints single values: loop over a list, or print one field of a map",
                ))
            }
            _ => minijinja::escape_formatter(out, state, value),
        }
    });
    env
}

/// Output that refuses to grow past `MAX_RENDERED_BYTES`.
#[derive(Default)]
struct Capped {
    out: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > MAX_RENDERED_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("output limit"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Why a render failed.
enum Failure {
    /// The template is refused as written (the screen, or it does not parse).
    Refused(String),
    /// It would run away whatever the values: out of fuel, over the output limit, a range or
    /// a recursion too big.
    RunsAway(String),
    /// It failed on these values.
    Failed(String),
}

impl Failure {
    fn into_error(self, name: &str) -> TemplateError {
        let (Failure::Refused(reason) | Failure::RunsAway(reason) | Failure::Failed(reason)) = self;
        TemplateError {
            name: name.to_string(),
            reason,
        }
    }
}

/// Screens, compiles and renders one template, within the fuel and the output limit.
fn render<C: Serialize>(
    env: &Environment<'_>,
    name: &str,
    source: &str,
    context: &C,
) -> Result<String, Failure> {
    screen(source).map_err(Failure::Refused)?;
    let template = env
        .template_from_named_str(name, source)
        .map_err(|e| Failure::Refused(e.to_string()))?;
    let mut out = Capped::default();
    match template.render_captured_to(context, &mut out) {
        Ok(_) => String::from_utf8(out.out).map_err(|e| Failure::Failed(e.to_string())),
        Err(_) if out.overflowed => Err(Failure::RunsAway(format!(
            "it renders more than the limit of {} KB",
            MAX_RENDERED_BYTES / 1024
        ))),
        Err(e) => {
            let reason = e.to_string();
            // minijinja names these limits only in its messages.
            let runs_away = e.kind() == minijinja::ErrorKind::OutOfFuel
                || reason.contains("too many elements")
                || reason.contains("recursion");
            Err(if runs_away {
                Failure::RunsAway(reason)
            } else {
                Failure::Failed(reason)
            })
        }
    }
}

/// Renders subject, text and HTML from template sources with one context.
pub fn render_email<C: Serialize>(
    subject: &str,
    text: &str,
    html: &str,
    context: &C,
) -> Result<RenderedEmail, TemplateError> {
    let env = environment();
    let render = |name: &str, source: &str| {
        render(&env, name, source, context).map_err(|f| f.into_error(name))
    };
    Ok(RenderedEmail {
        // Subjects are one line; a template must not smuggle header lines in.
        subject: render("subject.txt", subject)?
            .replace(['\r', '\n'], " ")
            .trim()
            .to_string(),
        text: render("body.txt", text)?,
        html: render("body.html", html)?,
    })
}

/// Checks that a template source passes the screen and parses, and that it does not run
/// away whatever the values: a trial render with no values (every field reads as empty) must
/// not run out of fuel, outgrow the output limit or build an oversized range. Failures that
/// depend on the values are left to the real render.
pub fn check_syntax(name: &str, source: &str) -> Result<(), TemplateError> {
    let mut env = environment();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    match render(&env, name, source, &()) {
        Ok(_) | Err(Failure::Failed(_)) => Ok(()),
        Err(f) => Err(f.into_error(name)),
    }
}

/// Renders one plain-text template (a rule action's note, message or subject).
pub fn render_text<C: Serialize>(
    name: &str,
    source: &str,
    context: &C,
) -> Result<String, TemplateError> {
    render(&environment(), name, source, context).map_err(|f| f.into_error(name))
}

/// The rating-request email a tenant has saved (or the defaults).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatingRequestTemplates {
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl Default for RatingRequestTemplates {
    fn default() -> Self {
        RatingRequestTemplates {
            subject: RATING_REQUEST_SUBJECT.into(),
            text: RATING_REQUEST_TEXT.into(),
            html: RATING_REQUEST_HTML.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateCheckError {
    #[error("{0} is {1} bytes; the limit is {MAX_TEMPLATE_BYTES}")]
    TooLarge(&'static str, usize),
    #[error(transparent)]
    Broken(#[from] TemplateError),
    #[error(
        "the {0} part must contain the unsubscribe link ({{{{ unsubscribe_url }}}}); every rating request carries one"
    )]
    NoUnsubscribe(&'static str),
    #[error(
        "the {0} part must show the rating choices (loop over {{{{ choices }}}} and use choice.url)"
    )]
    NoChoices(&'static str),
}

/// What a rating-request template can use. The sample values are what `check` renders with.
pub fn sample_context(kind: crate::domain::SurveyKind) -> serde_json::Value {
    let choices: Vec<serde_json::Value> = match kind {
        crate::domain::SurveyKind::Csat => ["Good", "Okay", "Bad"]
            .iter()
            .enumerate()
            .map(|(i, l)| serde_json::json!({"label": l, "url": format!("https://example.invalid/r/choice-{i}"), "color": "#16a34a"}))
            .collect(),
        crate::domain::SurveyKind::Nps => (0..=10)
            .map(|n| serde_json::json!({"label": n.to_string(), "url": format!("https://example.invalid/r/choice-{n}"), "color": "#16a34a"}))
            .collect(),
    };
    serde_json::json!({
        "brand": { "name": "Acme Support", "color": "#2563eb" },
        "ticket": { "id": "1001", "subject": "Printer jams", "url": "https://helpdesk.example/tickets/1001" },
        "contact": { "name": "Bob Stone" },
        "agent_name": "Alice Meyer",
        "choices": choices,
        "unsubscribe_url": "https://example.invalid/u/unsubscribe-token",
    })
}

impl RatingRequestTemplates {
    /// Refuses templates that would break sends: too big, not rendering (syntax, undefined
    /// filters, running out of fuel) for CSAT or NPS, or missing the choices or the unsubscribe
    /// link in either body.
    pub fn check(&self) -> Result<(), TemplateCheckError> {
        for (part, source) in [
            ("subject", &self.subject),
            ("text", &self.text),
            ("html", &self.html),
        ] {
            if source.len() > MAX_TEMPLATE_BYTES {
                return Err(TemplateCheckError::TooLarge(part, source.len()));
            }
        }
        for kind in [
            crate::domain::SurveyKind::Csat,
            crate::domain::SurveyKind::Nps,
        ] {
            let rendered =
                render_email(&self.subject, &self.text, &self.html, &sample_context(kind))?;
            for (part, body) in [("text", &rendered.text), ("html", &rendered.html)] {
                // Markers without '/', which HTML escaping rewrites.
                if !body.contains("unsubscribe-token") {
                    return Err(TemplateCheckError::NoUnsubscribe(part));
                }
                if !body.contains("choice-1") {
                    return Err(TemplateCheckError::NoChoices(part));
                }
            }
        }
        Ok(())
    }
}

fn templates_key(tenant: &crate::ids::TenantId) -> crate::store::Key {
    crate::store::Key::new(keys::tenant_prefix(tenant), "TEMPLATE#rating_request")
}

/// The tenant's rating-request templates, or the defaults.
pub async fn rating_request_templates(
    store: &dyn crate::store::ItemStore,
    tenant: &crate::ids::TenantId,
) -> Result<RatingRequestTemplates, crate::store::StoreError> {
    Ok(match store.get(&templates_key(tenant)).await? {
        Some(item) => crate::records::read_record(&item)?,
        None => RatingRequestTemplates::default(),
    })
}

/// Saves checked templates; `None` goes back to the defaults.
pub async fn save_rating_request_templates(
    store: &dyn crate::store::ItemStore,
    tenant: &crate::ids::TenantId,
    templates: Option<&RatingRequestTemplates>,
) -> Result<(), crate::store::StoreError> {
    match templates {
        Some(t) => {
            store
                .put(
                    crate::records::record_item(&templates_key(tenant), "template", t),
                    None,
                )
                .await
        }
        None => store.delete(&templates_key(tenant), None).await.map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_pass_their_own_check() {
        RatingRequestTemplates::default().check().unwrap();
    }

    #[test]
    fn templates_that_would_break_sends_are_refused() {
        let base = RatingRequestTemplates::default();
        let no_unsubscribe = RatingRequestTemplates {
            text: "{% for c in choices %}{{ c.url }}{% endfor %}".into(),
            ..base.clone()
        };
        assert!(matches!(
            no_unsubscribe.check(),
            Err(TemplateCheckError::NoUnsubscribe("text"))
        ));
        let endless = RatingRequestTemplates {
            html:
                "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
                    .into(),
            ..base.clone()
        };
        assert!(matches!(
            endless.check(),
            Err(TemplateCheckError::Broken(_))
        ));
        let sneaky = RatingRequestTemplates {
            html: "{% include 'secrets.txt' %}".into(),
            ..base.clone()
        };
        assert!(matches!(sneaky.check(), Err(TemplateCheckError::Broken(_))));
    }

    #[test]
    fn html_is_escaped_but_text_is_not_and_subjects_stay_on_one_line() {
        let ctx = serde_json::json!({"v": "<script>x</script>", "s": "a\r\nBcc: evil@x.com"});
        let out = render_email("{{ s }}", "{{ v }}", "<p>{{ v }}</p>", &ctx).unwrap();
        assert_eq!(out.html, "<p>&lt;script&gt;x&lt;&#x2f;script&gt;</p>");
        assert_eq!(out.text, "<script>x</script>");
        assert_eq!(out.subject, "a  Bcc: evil@x.com");
    }

    #[test]
    fn rule_templates_in_everyday_shapes_pass_the_check() {
        for source in [
            "Negative review from {{ customer.name }}",
            "{{ comment }}\n{{ ticket.url }}",
            "{% if rating.value == 'negative' %}Bad{% elif rating.nps < 7 %}Low{% else %}Ok{% endif %}",
            "{{ comment|default('(no comment)')|trim|upper }} on #{{ ticket.id|int }}",
            "{% for t in ticket.tags %}{{ t|title }}{% if not loop.last %}, {% endif %}{% endfor %}",
            "{{ review.tags|length }} tags, {{ case.id is defined }}",
            "{% raw %}{{ literally }}{% endraw %} {%- if agent.name %} {{ agent.name }}{% endif -%}",
        ] {
            check_syntax("body", source).unwrap_or_else(|e| panic!("{source}: {e}"));
        }
    }

    #[test]
    fn macros_are_not_part_of_the_template_language() {
        // Fuzzing found that a recursive macro doubling its argument (`f(n ~ n)`) exhausted
        // memory within the fuel; without macros there is no recursion at all.
        let recursive = "{% macro f(n) %}{{ f(n ~ n) }}{% endmacro %}{{ f(\"ab\") }}";
        assert!(check_syntax("note.txt", recursive).is_err());
        assert!(render_text("note.txt", recursive, &serde_json::json!({})).is_err());
    }

    #[test]
    fn imports_includes_and_extends_are_refused_not_panicking() {
        // Found by fuzzing: minijinja's code generator panics on an import into a non-name.
        for source in [
            "{% import '/etc/passwd' as 0 %}",
            "{% from 'x' import a %}{{ a }}",
            "{% include 'secrets.txt' %}",
            "{% extends 'base.html' %}",
        ] {
            let err = check_syntax("body.html", source).unwrap_err();
            assert!(
                err.reason.contains("is not available in templates"),
                "{source}: {}",
                err.reason
            );
            assert!(render_text("note.txt", source, &serde_json::json!({})).is_err());
        }
    }

    #[test]
    fn what_could_fill_the_memory_is_refused_at_the_check() {
        for (source, names) in [
            ("{{ a ~ b }}", "`~`"),
            ("{{ 'x' * 99999999 }}", "`*`"),
            ("{{ [1] + [2] }}", "`+`"),
            ("{% set a = 'x' %}", "set"),
            ("{% macro m() %}{% endmacro %}", "macro"),
            ("{% filter upper %}x{% endfilter %}", "filter"),
            (
                "{% for x in y recursive %}{{ loop(x) }}{% endfor %}",
                "recursive",
            ),
            ("{{ x|replace('a', 'aa') }}", "replace"),
            ("{{ x|safe }}", "safe"),
            ("{{ dict(a=1) }}", "dict"),
            (
                "{% for i in range(100000000) %}{% endfor %}",
                "too many elements",
            ),
            (
                "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
                "fuel",
            ),
            ("{% for i in range(99999) %}{{ 'x' }}{% endfor %}", "fuel"),
        ] {
            let err = check_syntax("body", source).err();
            let err = err.unwrap_or_else(|| panic!("{source} passed"));
            assert!(err.reason.contains(names), "{source}: {}", err.reason);
        }
        // Printing a whole list builds it in memory first.
        let err = render_text("t", "{{ range(10) }}", &()).unwrap_err();
        assert!(err.reason.contains("single values"), "{}", err.reason);
    }

    #[test]
    fn output_past_the_limit_stops_the_render() {
        let big = "y".repeat(10_000);
        let ctx = serde_json::json!({ "big": big });
        let err =
            render_text("t", "{% for i in range(100) %}{{ big }}{% endfor %}", &ctx).unwrap_err();
        assert!(err.reason.contains("256 KB"), "{}", err.reason);
        assert_eq!(
            render_text("t", "{% for i in range(20) %}{{ big }}{% endfor %}", &ctx)
                .unwrap()
                .len(),
            200_000
        );
    }

    #[test]
    fn a_broken_template_names_itself() {
        let err = render_email("{{ oops", "", "", &serde_json::json!({})).unwrap_err();
        assert_eq!(err.name, "subject.txt");
    }
}
