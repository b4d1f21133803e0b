//! Lines for errors found after parsing: the key an error names is looked
//! up in the document's spans (`toml::de::DeTable`), so a route's bad
//! `auth` points at its line, and a missing key at its table's header.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// The parsed document, kept for its spans.
pub(super) struct Locator<'a> {
    text: &'a str,
    doc: Option<Spanned<DeTable<'a>>>,
}

impl<'a> Locator<'a> {
    pub(super) fn new(text: &'a str) -> Locator<'a> {
        Locator {
            text,
            doc: DeTable::parse(text).ok(),
        }
    }

    /// The line (1-based) of `key`, spelled as errors spell it
    /// (`routes.auth`), in entry `index` of the array of tables on its way
    /// (`[[routes]]`, `[[apps]]`, `[[token.keys]]`). A key that is not
    /// written gives the line of the nearest table or entry that is.
    pub(super) fn line(&self, key: &str, index: Option<usize>) -> Option<usize> {
        let mut table = self.doc.as_ref()?.get_ref();
        let mut best = None;
        let mut segments = key.split('.').filter(|s| !s.is_empty()).peekable();
        while let Some(name) = segments.next() {
            let Some((_, value)) = table.iter().find(|(k, _)| k.get_ref() == name) else {
                break;
            };
            let mut value = value;
            if let (DeValue::Array(entries), Some(i)) = (value.get_ref(), index) {
                if let Some(entry) = entries.get(i) {
                    value = entry;
                }
            }
            // A table header's span is its own line; an inline value's too.
            best = Some(value.span().start);
            match value.get_ref() {
                DeValue::Table(t) if segments.peek().is_some() => table = t,
                _ => break,
            }
        }
        best.map(|at| self.text[..at.min(self.text.len())].matches('\n').count() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_written_and_missing_keys() {
        let text = "[server]\nlisten = \"x\"\n\n[[routes]]\npath = \"/a\"\n\n[[routes]]\npath = \"/b\"\nauth = \"no\"\n[token]\n[[token.keys]]\nid = \"k\"\n";
        let l = Locator::new(text);
        assert_eq!(l.line("server.listen", None), Some(2));
        assert_eq!(l.line("server.request_timeout", None), Some(1));
        assert_eq!(l.line("routes.path", Some(0)), Some(5));
        assert_eq!(l.line("routes.path", Some(1)), Some(8));
        assert_eq!(l.line("routes.auth", Some(1)), Some(9));
        assert_eq!(l.line("routes.auth", Some(0)), Some(4), "its [[routes]]");
        assert_eq!(l.line("token.keys.secret", Some(0)), Some(11));
        assert_eq!(l.line("admin.listen", None), None);
        let inline = "apps = [{ appid = \"a\" },\n  { appid = \"b\", secret = 1 }]\n";
        assert_eq!(Locator::new(inline).line("apps.secret", Some(1)), Some(2));
    }
}
