//! Label selector and namespace name syntax, checked the way the API server
//! checks them (apimachinery `labels.Parse`, `IsQualifiedName`,
//! `IsValidLabelValue`, `IsDNS1123Label`), so bad usage is refused with exit
//! 2 before any request instead of coming back as a 400 or an empty list.
//!
//! Pure: no client, no I/O. The selector text itself is sent unchanged; this
//! module only says whether the server would accept it and, if not, which
//! part is wrong.
//!
//! Grammar (whitespace between tokens is ignored):
//!
//! ```text
//! selector    = "" | requirement { "," requirement }
//! requirement = key                      exists
//!             | "!" key                  does not exist
//!             | key ("=" | "==" | "!=") [value]
//!             | key (">" | "<") integer
//!             | key ("in" | "notin") "(" [value] { "," [value] } ")"
//! ```

use std::fmt;

/// What is wrong with a label selector, naming the bad part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectorProblem {
    /// A token where the grammar wants another one.
    Unexpected {
        found: String,
        expected: &'static str,
    },
    /// A key that is not a qualified name (`[prefix/]name`).
    Key { key: String, why: String },
    /// A value that is not a valid label value.
    Value {
        key: String,
        value: String,
        why: String,
    },
    /// `>` or `<` with a value that is not a whole number.
    NotAnInteger { key: String, value: String },
}

impl fmt::Display for SelectorProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelectorProblem::Unexpected { found, expected } => {
                write!(f, "found {found}, expected {expected}")
            }
            SelectorProblem::Key { key, why } => write!(f, "key {key:?}: {why}"),
            SelectorProblem::Value { key, value, why } => {
                write!(f, "value {value:?} of key {key:?}: {why}")
            }
            SelectorProblem::NotAnInteger { key, value } => write!(
                f,
                "value {value:?} of key {key:?}: '>' and '<' need a whole number"
            ),
        }
    }
}

impl std::error::Error for SelectorProblem {}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Identifier(String),
    In,
    NotIn,
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    Greater,
    Less,
    Open,
    Close,
    Comma,
    End,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Identifier(s) => format!("{s:?}"),
            Token::In => "'in'".into(),
            Token::NotIn => "'notin'".into(),
            Token::Not => "'!'".into(),
            Token::Equals => "'='".into(),
            Token::DoubleEquals => "'=='".into(),
            Token::NotEquals => "'!='".into(),
            Token::Greater => "'>'".into(),
            Token::Less => "'<'".into(),
            Token::Open => "'('".into(),
            Token::Close => "')'".into(),
            Token::Comma => "','".into(),
            Token::End => "the end of the selector".into(),
        }
    }

    /// In a value (or key) position `in` and `notin` are plain words.
    fn as_word(&self) -> Option<String> {
        match self {
            Token::Identifier(s) => Some(s.clone()),
            Token::In => Some("in".into()),
            Token::NotIn => Some("notin".into()),
            _ => None,
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn lex(input: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut rest = input;
    loop {
        rest = rest.trim_start_matches(is_space);
        let Some(c) = rest.chars().next() else {
            tokens.push(Token::End);
            return tokens;
        };
        if is_special(c) {
            let (token, len) = match (c, rest[1..].chars().next()) {
                ('!', Some('=')) => (Token::NotEquals, 2),
                ('=', Some('=')) => (Token::DoubleEquals, 2),
                ('!', _) => (Token::Not, 1),
                ('=', _) => (Token::Equals, 1),
                ('(', _) => (Token::Open, 1),
                (')', _) => (Token::Close, 1),
                (',', _) => (Token::Comma, 1),
                ('>', _) => (Token::Greater, 1),
                _ => (Token::Less, 1),
            };
            tokens.push(token);
            rest = &rest[len..];
        } else {
            let end = rest
                .find(|c: char| is_space(c) || is_special(c))
                .unwrap_or(rest.len());
            let word = &rest[..end];
            tokens.push(match word {
                "in" => Token::In,
                "notin" => Token::NotIn,
                _ => Token::Identifier(word.to_owned()),
            });
            rest = &rest[end..];
        }
    }
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        self.tokens.get(self.at).unwrap_or(&Token::End)
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        self.at += 1;
        token
    }

    fn unexpected(found: &Token, expected: &'static str) -> SelectorProblem {
        SelectorProblem::Unexpected {
            found: found.describe(),
            expected,
        }
    }

    fn selector(&mut self) -> Result<(), SelectorProblem> {
        if *self.peek() == Token::End {
            return Ok(());
        }
        loop {
            self.requirement()?;
            match self.next() {
                Token::End => return Ok(()),
                Token::Comma => {
                    let next = self.peek();
                    if next.as_word().is_none() && *next != Token::Not {
                        return Err(Self::unexpected(next, "a key or '!' after ','"));
                    }
                }
                other => return Err(Self::unexpected(&other, "',' or the end of the selector")),
            }
        }
    }

    fn requirement(&mut self) -> Result<(), SelectorProblem> {
        let mut token = self.next();
        let negated = token == Token::Not;
        if negated {
            token = self.next();
        }
        let Some(key) = token.as_word() else {
            return Err(Self::unexpected(&token, "a key"));
        };
        check_key(&key)?;
        if negated || matches!(self.peek(), Token::End | Token::Comma) {
            return Ok(());
        }
        match self.next() {
            Token::In | Token::NotIn => self.set_values(&key),
            Token::Equals | Token::DoubleEquals | Token::NotEquals => self.exact_value(&key),
            Token::Greater | Token::Less => {
                let value = self.exact_value_text()?;
                check_value(&key, &value)?;
                if value.parse::<i64>().is_err() {
                    return Err(SelectorProblem::NotAnInteger { key, value });
                }
                Ok(())
            }
            other => Err(Self::unexpected(
                &other,
                "an operator: '=', '==', '!=', 'in', 'notin', '>' or '<'",
            )),
        }
    }

    /// The value after `=`, `==`, `!=`, `>`, `<`: a word, or nothing (empty).
    fn exact_value_text(&mut self) -> Result<String, SelectorProblem> {
        if matches!(self.peek(), Token::End | Token::Comma) {
            return Ok(String::new());
        }
        let token = self.next();
        token
            .as_word()
            .ok_or_else(|| Self::unexpected(&token, "a value"))
    }

    fn exact_value(&mut self, key: &str) -> Result<(), SelectorProblem> {
        let value = self.exact_value_text()?;
        check_value(key, &value)
    }

    /// `( v1, v2, ... )`; empty entries are empty values.
    fn set_values(&mut self, key: &str) -> Result<(), SelectorProblem> {
        let open = self.next();
        if open != Token::Open {
            return Err(Self::unexpected(&open, "'(' after 'in' or 'notin'"));
        }
        loop {
            let token = self.next();
            if let Some(value) = token.as_word() {
                check_value(key, &value)?;
                match self.next() {
                    Token::Comma => {}
                    Token::Close => return Ok(()),
                    other => return Err(Self::unexpected(&other, "',' or ')' after a value")),
                }
            } else {
                match token {
                    Token::Comma => {}
                    Token::Close => return Ok(()),
                    other => return Err(Self::unexpected(&other, "a value, ',' or ')'")),
                }
            }
        }
    }
}

/// Checks a label selector as the API server parses it.
///
/// # Errors
/// [`SelectorProblem`] naming the token, key or value at fault.
pub fn check_selector(selector: &str) -> Result<(), SelectorProblem> {
    Parser {
        tokens: lex(selector),
        at: 0,
    }
    .selector()
}

const NAME_MAX: usize = 63;
const SUBDOMAIN_MAX: usize = 253;

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`: a label name or value.
fn is_label_word(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    s.starts_with(alnum)
        && s.ends_with(alnum)
        && s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
}

/// A DNS-1123 label: ≤ 63 of `[a-z0-9-]`, starting and ending alphanumeric.
pub fn is_dns1123_label(s: &str) -> bool {
    let lower_alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    s.len() <= NAME_MAX
        && s.starts_with(lower_alnum)
        && s.ends_with(lower_alnum)
        && s.chars().all(|c| lower_alnum(c) || c == '-')
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= SUBDOMAIN_MAX
        && s.split('.').all(|part| {
            let lower_alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
            part.starts_with(lower_alnum)
                && part.ends_with(lower_alnum)
                && part.chars().all(|c| lower_alnum(c) || c == '-')
        })
}

const NAME_FORM: &str =
    "at most 63 characters of [A-Za-z0-9-_.], starting and ending with a letter or digit";

fn check_key(key: &str) -> Result<(), SelectorProblem> {
    let bad = |why: String| SelectorProblem::Key {
        key: key.to_owned(),
        why,
    };
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err(bad("the prefix before '/' is empty".into()));
        }
        if !is_dns1123_subdomain(prefix) {
            return Err(bad(format!(
                "prefix {prefix:?} is not a DNS subdomain (lowercase letters, digits, '-' and '.', at most {SUBDOMAIN_MAX} characters)"
            )));
        }
    }
    if name.is_empty() {
        return Err(bad("the name is empty".into()));
    }
    if name.len() > NAME_MAX || !is_label_word(name) {
        return Err(bad(format!("name {name:?} must be {NAME_FORM}")));
    }
    Ok(())
}

fn check_value(key: &str, value: &str) -> Result<(), SelectorProblem> {
    if value.is_empty() || (value.len() <= NAME_MAX && is_label_word(value)) {
        return Ok(());
    }
    Err(SelectorProblem::Value {
        key: key.to_owned(),
        value: value.to_owned(),
        why: format!("must be empty or {NAME_FORM}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_the_api_server_accepts_are_accepted() {
        let long_name = "a".repeat(63);
        let long_value = format!("k={}", "v".repeat(63));
        let long_key = format!("{}/{long_name}", "p".repeat(253));
        let cases = [
            "",
            "   ",
            "app",
            "!app",
            "app=web",
            "app==web",
            "app!=web",
            "app=",
            "app!=",
            "app=web,tier!=db",
            " app = web , tier in ( a , b ) ",
            "app in (a,b)",
            "app notin (a)",
            "app in ()",
            "app in (,)",
            "app in (a,,b)",
            "app in (a,)",
            "app in (,a)",
            "x>5",
            "x<5",
            "in in (in, notin)",
            "notin",
            "example.com/app=web",
            "a-b.c/A_b.c-D=x_Y.z-9",
            "app.kubernetes.io/name in (web),!skip",
            &long_name,
            &long_value,
            &long_key,
        ];
        for selector in cases {
            assert_eq!(check_selector(selector), Ok(()), "{selector:?}");
        }
    }

    #[test]
    fn selectors_the_api_server_rejects_name_the_bad_part() {
        let long_name = "a".repeat(64);
        let long_value = format!("k={}", "v".repeat(64));
        let long_prefix = format!("{}/a", "p".repeat(254));
        let cases: [(&str, &str); 30] = [
            (
                "app in (a,b",
                "found the end of the selector, expected ',' or ')'",
            ),
            ("app in a", "found \"a\", expected '('"),
            ("app in (a b)", "found \"b\", expected ',' or ')'"),
            ("app in (a=)", "found '=', expected ',' or ')'"),
            ("app in", "found the end of the selector, expected '('"),
            (
                "app=web,",
                "found the end of the selector, expected a key or '!'",
            ),
            (",app", "found ',', expected a key"),
            ("app,,b", "found ',', expected a key or '!'"),
            ("app web", "found \"web\", expected an operator"),
            ("app=a=b", "found '=', expected ','"),
            ("app=(a)", "found '(', expected a value"),
            ("!app=web", "found '=', expected ','"),
            ("!", "found the end of the selector, expected a key"),
            ("!!app", "found '!', expected a key"),
            ("=web", "found '=', expected a key"),
            (
                "x>",
                "value \"\" of key \"x\": '>' and '<' need a whole number",
            ),
            (
                "x>a",
                "value \"a\" of key \"x\": '>' and '<' need a whole number",
            ),
            ("x<1.5", "need a whole number"),
            ("app=we/b", "value \"we/b\" of key \"app\""),
            ("app=-web", "value \"-web\" of key \"app\""),
            ("app in (ok,bad!)", "found '!', expected ',' or ')'"),
            ("app in (ok,b@d)", "value \"b@d\" of key \"app\""),
            ("App_Name-", "key \"App_Name-\": name \"App_Name-\""),
            ("/app", "key \"/app\": the prefix before '/' is empty"),
            ("example.com/", "key \"example.com/\": the name is empty"),
            (
                "Example.com/app",
                "prefix \"Example.com\" is not a DNS subdomain",
            ),
            ("a/b/c", "key \"a/b/c\": name \"b/c\""),
            (&long_name, "must be at most 63 characters"),
            (&long_value, "must be empty or at most 63"),
            (&long_prefix, "is not a DNS subdomain"),
        ];
        for (selector, expected) in cases {
            let message = check_selector(selector)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                message.contains(expected),
                "{selector:?}: expected a problem containing {expected:?}, got {message:?}"
            );
        }
    }

    #[test]
    fn namespace_names_are_dns1123_labels() {
        let longest = "n".repeat(63);
        let too_long = "n".repeat(64);
        let cases = [
            ("apps", true),
            ("a", true),
            ("0", true),
            ("team-a-1", true),
            (longest.as_str(), true),
            (too_long.as_str(), false),
            ("Bad_NS", false),
            ("Apps", false),
            ("a.b", false),
            ("-apps", false),
            ("apps-", false),
            ("ap ps", false),
            ("", false),
        ];
        for (name, valid) in cases {
            assert_eq!(is_dns1123_label(name), valid, "{name:?}");
        }
    }
}
