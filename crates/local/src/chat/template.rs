//! The chat template: turns a conversation into the model's prompt text by rendering the
//! Jinja template stored in the GGUF (`tokenizer.chat_template`), as Hugging Face's
//! `apply_chat_template` does, with ChatML as the fallback for files without one.

use flywheel_llm::ChatMessage;
use minijinja::{context, Environment, Error, ErrorKind, Value};

use crate::LocalError;

const TEMPLATE_NAME: &str = "chat";

/// ChatML, used when the GGUF has no template of its own.
const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + \
     message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ \
     '<|im_start|>assistant\\n' }}{% endif %}";

/// A compiled chat template.
pub(crate) struct ChatTemplate {
    environment: Environment<'static>,
    bos_token: String,
    eos_token: String,
    source: TemplateSource,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Where the template came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TemplateSource {
    /// The model's own template from its GGUF metadata.
    Model,
    /// ChatML, because the file has no (usable) template.
    ChatMlFallback,
}

impl ChatTemplate {
    /// Compiles `source` (the GGUF's template); falls back to ChatML with a warning when it is
    /// absent or does not compile. `file` names the model in the warning.
    pub(crate) fn new(
        file: &std::path::Path,
        source: Option<&str>,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
    ) -> ChatTemplate {
        let bos_token = bos_token.unwrap_or_default().to_owned();
        let eos_token = eos_token.unwrap_or_default().to_owned();
        if let Some(source) = source {
            match environment(source) {
                Ok(environment) => {
                    return ChatTemplate {
                        environment,
                        bos_token,
                        eos_token,
                        source: TemplateSource::Model,
                    }
                }
                Err(err) => tracing::warn!(
                    file = %file.display(),
                    error = %err,
                    "the model's chat template does not compile; using ChatML instead"
                ),
            }
        } else {
            tracing::warn!(
                file = %file.display(),
                "the model has no chat template (`tokenizer.chat_template`); using ChatML"
            );
        }
        ChatTemplate {
            // ChatML is a fixed, tested template: it compiles.
            environment: environment(CHATML).unwrap_or_else(|_| Environment::new()),
            bos_token,
            eos_token,
            source: TemplateSource::ChatMlFallback,
        }
    }

    pub(crate) fn source(&self) -> TemplateSource {
        self.source
    }

    /// The prompt for `messages`, ending with the assistant's turn opened.
    pub(crate) fn render(&self, messages: &[ChatMessage]) -> Result<String, LocalError> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|message| {
                let content = message.content.as_deref().unwrap_or_default();
                match &message.name {
                    Some(name) => context! { role => message.role.as_str(), content, name },
                    None => context! { role => message.role.as_str(), content },
                }
            })
            .collect();
        let template = self
            .environment
            .get_template(TEMPLATE_NAME)
            .map_err(|err| LocalError::Inference(format!("chat template missing: {err}")))?;
        template
            .render(context! {
                messages,
                add_generation_prompt => true,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
            })
            .map_err(|err| {
                LocalError::InvalidRequest(format!(
                    "the model's chat template cannot render this conversation: {}",
                    error_text(&err)
                ))
            })
    }
}

/// An environment configured like Hugging Face's template sandbox (`trim_blocks`,
/// `lstrip_blocks`, Python string methods, `raise_exception`).
fn environment(source: &str) -> Result<Environment<'static>, Error> {
    let mut environment = Environment::new();
    environment.set_trim_blocks(true);
    environment.set_lstrip_blocks(true);
    environment.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    environment.add_function(
        "raise_exception",
        |message: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message))
        },
    );
    environment.add_template_owned(TEMPLATE_NAME, source.to_owned())?;
    Ok(environment)
}

/// The template's own message for `raise_exception`, else minijinja's description.
fn error_text(err: &Error) -> String {
    match err.kind() {
        ErrorKind::InvalidOperation => err
            .detail()
            .map(str::to_owned)
            .unwrap_or_else(|| err.to_string()),
        _ => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use flywheel_llm::Role;

    use super::*;

    #[test]
    fn chatml_fallback_renders_a_conversation() {
        let template = ChatTemplate::new(std::path::Path::new("x.gguf"), None, None, None);
        assert_eq!(template.source(), TemplateSource::ChatMlFallback);
        let prompt = template
            .render(&[
                ChatMessage::text(Role::System, "Be brief."),
                ChatMessage::text(Role::User, "Hi"),
            ])
            .unwrap();
        assert_eq!(
            prompt,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
             <|im_start|>assistant\n"
        );
    }

    #[test]
    fn raise_exception_becomes_an_invalid_request_with_the_templates_message() {
        let source = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation \
                      must start with a user message') }}{% endif %}ok";
        let template = ChatTemplate::new(std::path::Path::new("x.gguf"), Some(source), None, None);
        assert_eq!(template.source(), TemplateSource::Model);
        let err = template
            .render(&[ChatMessage::text(Role::Assistant, "Hello")])
            .unwrap_err();
        assert!(matches!(err, LocalError::InvalidRequest(_)), "{err:?}");
        assert!(
            err.to_string()
                .contains("Conversation must start with a user message"),
            "{err}"
        );
    }

    #[test]
    fn python_string_methods_work_and_bos_is_available() {
        let source = "{{ bos_token }}{% for m in messages %}{{ m['content'].strip().upper() }}\
                      {% endfor %}";
        let template = ChatTemplate::new(
            std::path::Path::new("x.gguf"),
            Some(source),
            Some("<s>"),
            None,
        );
        let prompt = template
            .render(&[ChatMessage::text(Role::User, "  hi  ")])
            .unwrap();
        assert_eq!(prompt, "<s>HI");
    }

    #[test]
    fn a_template_that_does_not_compile_falls_back_to_chatml() {
        let template = ChatTemplate::new(
            std::path::Path::new("x.gguf"),
            Some("{% for %}"),
            None,
            None,
        );
        assert_eq!(template.source(), TemplateSource::ChatMlFallback);
    }
}
