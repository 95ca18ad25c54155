//! closedloop's block in a customer account's note: the text between a line `[closedloop]` and
//! a line `[/closedloop]`. Upserting or removing it changes those lines only; every other byte
//! of the note is kept, line endings (LF or CRLF) included.
//!
//! A marker counts only as a whole line, so foreign text that merely mentions `[closedloop]`
//! is foreign text. A block is appended after one line break of the note's own kind, and
//! removing a block at the end removes that one line break too: upsert then remove gives the
//! note back byte for byte.

use closedloop_core::helpdesk::AccountBlock;

pub const BEGIN: &str = "[closedloop]";
pub const END: &str = "[/closedloop]";

/// The block's byte range: from the start of its `[closedloop]` line to the end of its
/// `[/closedloop]` (line break not included).
fn find(text: &str) -> Option<(usize, usize)> {
    let mut begin = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches('\n').trim_end_matches('\r');
        match (begin, content.trim_end()) {
            (None, BEGIN) => begin = Some(offset),
            (Some(start), END) => return Some((start, offset + content.len())),
            _ => {}
        }
        offset += line.len();
    }
    None
}

fn line_ending(text: &str) -> &'static str {
    if text.contains("\r\n") { "\r\n" } else { "\n" }
}

/// The block's lines, with any line of ours that would read as a marker defused.
fn render(block: &AccountBlock, eol: &str) -> String {
    let mut out = String::from(BEGIN);
    let subject = (!block.subject.trim().is_empty()).then_some(block.subject.as_str());
    for line in subject.into_iter().chain(block.text.lines()) {
        out.push_str(eol);
        let t = line.trim();
        if t == BEGIN || t == END {
            out.push_str(&t.replace('[', "(").replace(']', ")"));
        } else {
            out.push_str(line.trim_end_matches('\r'));
        }
    }
    out.push_str(eol);
    out.push_str(END);
    out
}

/// The note with closedloop's block set to `block` (added at the end if it had none).
pub fn upsert(text: &str, block: &AccountBlock) -> String {
    let eol = line_ending(text);
    let rendered = render(block, eol);
    match find(text) {
        Some((start, end)) => format!("{}{}{}", &text[..start], rendered, &text[end..]),
        None if text.is_empty() => rendered,
        None => format!("{text}{eol}{rendered}"),
    }
}

/// The note without closedloop's block (unchanged if it had none).
pub fn remove(text: &str) -> String {
    let Some((start, end)) = find(text) else {
        return text.to_string();
    };
    let (before, after) = (&text[..start], &text[end..]);
    if after.is_empty() {
        let before = before
            .strip_suffix("\r\n")
            .or_else(|| before.strip_suffix('\n'))
            .unwrap_or(before);
        before.to_string()
    } else {
        let after = after
            .strip_prefix("\r\n")
            .or_else(|| after.strip_prefix('\n'))
            .unwrap_or(after);
        format!("{before}{after}")
    }
}

pub fn has_block(text: &str) -> bool {
    find(text).is_some()
}

/// What to write back after an upsert: `None` when the note already says it (no call).
pub fn upserted(text: &str, block: &AccountBlock) -> Option<String> {
    Some(upsert(text, block)).filter(|new| new != text)
}

/// What to write back after a removal: `None` when the note has no block (no call).
pub fn removed(text: &str) -> Option<String> {
    has_block(text).then(|| remove(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(text: &str) -> AccountBlock {
        AccountBlock {
            detractor: true,
            subject: String::new(),
            latest_score: Some(3),
            answered_at: None,
            text: text.into(),
        }
    }

    const FOREIGN: &[&str] = &[
        "",
        "VIP customer",
        "VIP customer\n",
        "Zahlung per Überweisung 💶\r\nKontakt: Jürgen\r\n",
        "line one\r\nline two",
        "We love [closedloop] and mention it inline.\n[closedloop] is not alone on this line",
        "  [closedloop]\nindented marker is text\n",
        "trailing spaces   \n\n\n",
        "[/closedloop]\nan end marker without a beginning\n",
    ];

    #[test]
    fn upsert_then_remove_gives_every_note_back_byte_for_byte() {
        for foreign in FOREIGN {
            let with = upsert(foreign, &block("Latest NPS: 3 (detractor)"));
            assert!(has_block(&with), "{foreign:?} -> {with:?}");
            assert!(with.starts_with(foreign), "{foreign:?} -> {with:?}");
            assert_eq!(remove(&with), *foreign, "{with:?}");
        }
    }

    #[test]
    fn a_second_upsert_replaces_the_block_and_leaves_the_rest() {
        for foreign in FOREIGN {
            let once = upsert(foreign, &block("Latest NPS: 3 (detractor)"));
            let twice = upsert(&once, &block("Latest NPS: 5 (detractor)"));
            assert_eq!(twice, upsert(foreign, &block("Latest NPS: 5 (detractor)")));
            assert_eq!(twice.matches(BEGIN).count(), once.matches(BEGIN).count());
            assert_eq!(remove(&twice), *foreign);
        }
    }

    #[test]
    fn text_someone_wrote_after_the_block_is_kept_and_the_block_keeps_its_place() {
        let note = "Billing: monthly\r\n[closedloop]\r\nLatest NPS: 3\r\n[/closedloop]\r\nCall before 5pm ☎\r\n";
        let updated = upsert(note, &block("Latest NPS: 9 (promoter)"));
        assert_eq!(
            updated,
            "Billing: monthly\r\n[closedloop]\r\nLatest NPS: 9 (promoter)\r\n[/closedloop]\r\nCall before 5pm ☎\r\n"
        );
        assert_eq!(
            remove(&updated),
            "Billing: monthly\r\nCall before 5pm ☎\r\n"
        );
    }

    #[test]
    fn crlf_notes_get_crlf_block_lines() {
        let with = upsert("a\r\nb", &block("x\ny"));
        assert_eq!(with, "a\r\nb\r\n[closedloop]\r\nx\r\ny\r\n[/closedloop]");
    }

    #[test]
    fn our_own_text_cannot_forge_a_marker() {
        let with = upsert("keep", &block("[/closedloop]\nstill ours"));
        assert_eq!(
            with,
            "keep\n[closedloop]\n(/closedloop)\nstill ours\n[/closedloop]"
        );
        assert_eq!(remove(&with), "keep");
    }

    #[test]
    fn removing_from_a_note_without_a_block_changes_nothing() {
        for foreign in FOREIGN {
            assert_eq!(remove(foreign), *foreign);
        }
    }
}
