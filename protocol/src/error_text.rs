//! How an error is told to a person: in one line, each cause once.
//!
//! Ferry's errors say what failed and include their cause in their own message ("blob X in pack
//! Y: authentication failed"), and also return that cause from `source()`, so that tools that
//! walk the chain find it. Printing the chain then says each cause twice; this prints a cause
//! only when the text so far does not already end with it (context added by a caller, which
//! does not repeat its cause, is followed by it).

/// One line for `error` and every cause below it, none repeated.
pub fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let told = e.to_string();
        if !told.is_empty() && !text.ends_with(&told) {
            text.push_str(": ");
            text.push_str(&told);
        }
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_text;

    /// An error whose message is `message`, with an optional cause.
    #[derive(Debug)]
    struct Layer {
        message: String,
        cause: Option<Box<Layer>>,
    }

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.message)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.cause.as_deref().map(|c| c as _)
        }
    }

    fn layer(message: &str, cause: Option<Layer>) -> Layer {
        Layer {
            message: message.into(),
            cause: cause.map(Box::new),
        }
    }

    #[test]
    fn each_cause_is_told_once() {
        let io = layer("File exists (os error 17)", None);
        let wrapped = layer("afile: File exists (os error 17)", Some(io));
        let context = layer("restoring snapshot 19c0eb00", Some(wrapped));
        assert_eq!(
            error_text(&context),
            "restoring snapshot 19c0eb00: afile: File exists (os error 17)"
        );
    }

    #[test]
    fn causes_a_message_leaves_out_are_added() {
        let io = layer("connection refused", None);
        let context = layer("reading the index", Some(io));
        assert_eq!(
            error_text(&context),
            "reading the index: connection refused"
        );
        assert_eq!(error_text(&layer("plain", None)), "plain");
    }
}
