//! A tiny evaluator for the CEL subset used by the Flux CRDs'
//! `x-kubernetes-validations`: `has(self.a.b)`, `self.a == 'x'`, `!=`, `!`,
//! `&&`, `||` and parentheses. Anything else is reported as unsupported and
//! the rule is skipped (documented in docs/fake-apiserver.md).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Dot,
    LParen,
    RParen,
    Not,
    And,
    Or,
    Eq,
    Ne,
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\n' | '\t' | '\r' => i += 1,
            '.' => {
                out.push(Tok::Dot);
                i += 1
            }
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                out.push(Tok::Ne);
                i += 2
            }
            '!' => {
                out.push(Tok::Not);
                i += 1
            }
            '=' if chars.get(i + 1) == Some(&'=') => {
                out.push(Tok::Eq);
                i += 2
            }
            '&' if chars.get(i + 1) == Some(&'&') => {
                out.push(Tok::And);
                i += 2
            }
            '|' if chars.get(i + 1) == Some(&'|') => {
                out.push(Tok::Or);
                i += 2
            }
            '\'' | '"' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                while i < chars.len() && chars[i] != quote {
                    s.push(chars[i]);
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("unterminated string".into());
                }
                i += 1;
                out.push(Tok::Str(s));
            }
            c if c.is_ascii_digit() => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                out.push(Tok::Num(text.parse().map_err(|_| "bad number")?));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unsupported character {other:?}")),
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Bool(bool),
    Json(Value),
    Missing,
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    this: &'a Value,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, t: Tok) -> Result<(), String> {
        match self.next() {
            Some(got) if got == t => Ok(()),
            other => Err(format!("expected {t:?}, got {other:?}")),
        }
    }

    fn or(&mut self) -> Result<Val, String> {
        let mut left = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            let right = self.and()?;
            left = Val::Bool(truthy(&left)? || truthy(&right)?);
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Val, String> {
        let mut left = self.unary()?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            let right = self.unary()?;
            left = Val::Bool(truthy(&left)? && truthy(&right)?);
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Val, String> {
        if self.peek() == Some(&Tok::Not) {
            self.pos += 1;
            let v = self.unary()?;
            return Ok(Val::Bool(!truthy(&v)?));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Val, String> {
        let left = self.primary()?;
        match self.peek() {
            Some(Tok::Eq) | Some(Tok::Ne) => {
                let ne = self.next() == Some(Tok::Ne);
                let right = self.primary()?;
                if left == Val::Missing || right == Val::Missing {
                    return Err("no such key".into());
                }
                Ok(Val::Bool((left == right) != ne))
            }
            _ => Ok(left),
        }
    }

    fn path(&mut self, first: &str) -> Result<Val, String> {
        if first != "self" {
            return Err(format!("unsupported identifier {first}"));
        }
        let mut cur = Some(self.this);
        while self.peek() == Some(&Tok::Dot) {
            self.pos += 1;
            match self.next() {
                Some(Tok::Ident(f)) => cur = cur.and_then(|v| v.get(&f)),
                other => return Err(format!("expected field, got {other:?}")),
            }
        }
        Ok(match cur {
            Some(v) => Val::Json(v.clone()),
            None => Val::Missing,
        })
    }

    fn primary(&mut self) -> Result<Val, String> {
        match self.next() {
            Some(Tok::LParen) => {
                let v = self.or()?;
                self.expect(Tok::RParen)?;
                Ok(v)
            }
            Some(Tok::Str(s)) => Ok(Val::Json(Value::String(s))),
            Some(Tok::Num(n)) => Ok(Val::Json(serde_json::json!(n))),
            Some(Tok::Ident(id)) if id == "true" => Ok(Val::Bool(true)),
            Some(Tok::Ident(id)) if id == "false" => Ok(Val::Bool(false)),
            Some(Tok::Ident(id)) if id == "has" => {
                self.expect(Tok::LParen)?;
                let first = match self.next() {
                    Some(Tok::Ident(f)) => f,
                    other => return Err(format!("expected path in has(), got {other:?}")),
                };
                let v = self.path(&first)?;
                self.expect(Tok::RParen)?;
                Ok(Val::Bool(v != Val::Missing))
            }
            Some(Tok::Ident(id)) => self.path(&id),
            other => Err(format!("unexpected token {other:?}")),
        }
    }
}

fn truthy(v: &Val) -> Result<bool, String> {
    match v {
        Val::Bool(b) => Ok(*b),
        Val::Json(Value::Bool(b)) => Ok(*b),
        other => Err(format!("not a boolean: {other:?}")),
    }
}

/// Evaluates `rule` with `self` bound to `this`. `Err` means the rule uses
/// CEL beyond the supported subset.
pub fn eval(rule: &str, this: &Value) -> Result<bool, String> {
    let toks = lex(rule)?;
    let mut p = Parser { toks, pos: 0, this };
    let v = p.or()?;
    if p.pos != p.toks.len() {
        return Err("trailing tokens".into());
    }
    truthy(&v)
}

#[cfg(test)]
mod tests {
    use super::eval;
    use serde_json::json;

    #[test]
    fn flux_chart_xor_chart_ref_rule_is_evaluated() {
        let rule =
            "(has(self.chart) && !has(self.chartRef)) || (!has(self.chart) && has(self.chartRef))";
        assert_eq!(eval(rule, &json!({"chart": {}})), Ok(true));
        assert_eq!(eval(rule, &json!({"chartRef": {}})), Ok(true));
        assert_eq!(eval(rule, &json!({})), Ok(false));
        assert_eq!(eval(rule, &json!({"chart": {}, "chartRef": {}})), Ok(false));
    }

    #[test]
    fn string_comparison_rules_are_evaluated() {
        let rule = "!has(self.retryInterval) || self.name == 'RetryOnFailure'";
        assert_eq!(
            eval(
                rule,
                &json!({"name": "RetryOnFailure", "retryInterval": "1m"})
            ),
            Ok(true)
        );
        assert_eq!(
            eval(rule, &json!({"name": "Other", "retryInterval": "1m"})),
            Ok(false)
        );
        assert_eq!(eval(rule, &json!({"name": "Other"})), Ok(true));
    }

    #[test]
    fn unsupported_cel_is_an_error_not_a_verdict() {
        assert!(eval("self.items.all(x, x > 1)", &json!({"items": []})).is_err());
    }
}
