//! A form shown again after its action failed: what the user typed, and the error beside the
//! field it concerns (or above the form when it concerns no single field). Messages are shown as
//! sentences.

use std::collections::BTreeMap;

use super::error::AppError;

/// The state of one form on a page.
#[derive(Clone, Debug, Default)]
pub struct FormState {
    values: BTreeMap<&'static str, String>,
    errors: BTreeMap<&'static str, String>,
    general: Option<String>,
}

impl FormState {
    /// A form holding what the user typed in `values` (never passwords).
    pub fn typed(values: &[(&'static str, &str)]) -> FormState {
        FormState {
            values: values.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            ..FormState::default()
        }
    }

    /// Puts `err`'s message beside the field `field_of` names for its code (above the form for
    /// `None`). An error that is not the user's to fix is given back.
    pub fn with_error(
        mut self,
        err: AppError,
        field_of: impl Fn(&str) -> Option<&'static str>,
    ) -> Result<FormState, AppError> {
        let AppError::Client { code, message, .. } = &err else {
            return Err(err);
        };
        let message = sentence(message);
        match field_of(code) {
            Some(field) => {
                self.errors.insert(field, message);
            }
            None => self.general = Some(message),
        }
        Ok(self)
    }

    /// What the user typed in `field` (empty when nothing).
    pub fn value(&self, field: &str) -> &str {
        self.values.get(field).map(String::as_str).unwrap_or("")
    }

    /// The error beside `field`, if any.
    pub fn error(&self, field: &str) -> Option<&str> {
        self.errors.get(field).map(String::as_str)
    }

    /// The error above the form, if any.
    pub fn general(&self) -> Option<&str> {
        self.general.as_deref()
    }

    /// Whether the form holds any error.
    pub fn failed(&self) -> bool {
        self.general.is_some() || !self.errors.is_empty()
    }
}

/// A message as a sentence: its first letter capitalised and a full stop at the end.
pub fn sentence(message: &str) -> String {
    let message = message.trim();
    let mut chars = message.chars();
    let mut out: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => return String::new(),
    };
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[test]
    fn an_error_goes_beside_its_field_and_the_input_stays() {
        let err = AppError::client(
            StatusCode::CONFLICT,
            "domain_not_verified",
            "example.com is not a verified domain",
        );
        let form = FormState::typed(&[("email", "ann@example.com"), ("name", "Ann")])
            .with_error(err, |code| {
                (code == "domain_not_verified").then_some("email")
            })
            .unwrap();
        assert_eq!(form.value("email"), "ann@example.com");
        assert_eq!(form.value("name"), "Ann");
        assert_eq!(form.value("password"), "");
        assert_eq!(
            form.error("email"),
            Some("Example.com is not a verified domain.")
        );
        assert_eq!(form.general(), None);
        assert!(form.failed());
        let general = FormState::default()
            .with_error(AppError::bad_request("no seats left"), |_| None)
            .unwrap();
        assert_eq!(general.general(), Some("No seats left."));
        let internal =
            FormState::default().with_error(AppError::Internal(anyhow::anyhow!("db")), |_| None);
        assert!(
            internal.is_err(),
            "an internal error is not shown in the form"
        );
    }

    #[test]
    fn messages_become_sentences() {
        assert_eq!(
            sentence("the email or password is wrong"),
            "The email or password is wrong."
        );
        assert_eq!(sentence("Already a sentence."), "Already a sentence.");
        assert_eq!(sentence("“x” is not valid"), "“x” is not valid.");
        assert_eq!(sentence(""), "");
    }
}
