//! Parse: turns attribute tokens and the annotated function into a raw, unchecked form.
//!
//! Nothing here decides whether a key or a parameter is *allowed*; that is `validate`'s job.
//! Parsing only fails on tokens that are not Rust-shaped the way the attributes expect.

use proc_macro2::{Span, TokenStream};
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprLit, Ident, Lit, LitStr, Token};

/// Collects errors so that every problem is reported, not only the first.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    /// Records an error at `span`.
    pub(crate) fn push(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push_error(syn::Error::new(span, message));
    }

    /// Records an error spanning all of `tokens` (first to last token, also on stable).
    pub(crate) fn push_spanned(
        &mut self,
        tokens: impl quote::ToTokens,
        message: impl std::fmt::Display,
    ) {
        self.push_error(syn::Error::new_spanned(tokens, message));
    }

    /// Records an already built error.
    pub(crate) fn push_error(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// `Err` with every recorded error, or `Ok(value)`.
    pub(crate) fn finish<T>(self, value: T) -> syn::Result<T> {
        match self.0 {
            Some(error) => Err(error),
            None => Ok(value),
        }
    }
}

/// One `key = value` option, value unchecked.
#[derive(Clone)]
pub(crate) struct KeyValue {
    /// The key as written.
    pub(crate) key: Ident,
    /// The value expression as written.
    pub(crate) value: Expr,
}

/// A topic given as a positional argument.
#[derive(Clone)]
pub(crate) enum Topic {
    /// `"orders"`.
    Lit(LitStr),
    /// A constant or another expression (`ORDERS_TOPIC`, `topics::ORDERS`,
    /// `concat!("eu-", "orders")`), evaluated when the subscriber is registered.
    Expr(Box<Expr>),
}

impl quote::ToTokens for Topic {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        match self {
            Topic::Lit(lit) => lit.to_tokens(tokens),
            Topic::Expr(expr) => expr.to_tokens(tokens),
        }
    }
}

/// The arguments of `#[subscriber(...)]` or `#[publisher(...)]`: topics and options.
#[derive(Clone, Default)]
pub(crate) struct AttrArgs {
    /// The positional topics, in order.
    pub(crate) topics: Vec<Topic>,
    /// The `key = value` options, in order (duplicates kept, for validation to report).
    pub(crate) options: Vec<KeyValue>,
}

impl Parse for AttrArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let items = Punctuated::<Expr, Token![,]>::parse_terminated(input)?;
        let mut args = AttrArgs::default();
        let mut errors = Errors::default();
        for item in items {
            match item {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(topic),
                    ..
                }) => args.topics.push(Topic::Lit(topic)),
                Expr::Assign(assign) => match &*assign.left {
                    Expr::Path(path) if path.qself.is_none() && path.path.get_ident().is_some() => {
                        let key = path
                            .path
                            .get_ident()
                            .cloned()
                            .unwrap_or_else(|| Ident::new("_", path.span()));
                        args.options.push(KeyValue {
                            key,
                            value: *assign.right,
                        });
                    }
                    other => {
                        errors.push(other.span(), "expected an option name such as `group_id`")
                    }
                },
                Expr::Lit(other) => errors.push(
                    other.span(),
                    "expected a topic: a string literal (\"orders\"), a constant (`ORDERS_TOPIC`), or an option (`key = value`)",
                ),
                other => args.topics.push(Topic::Expr(Box::new(other))),
            }
        }
        errors.finish(args)
    }
}

impl AttrArgs {
    /// Parses attribute arguments given as a token stream (the macro's `attr` input).
    pub(crate) fn from_tokens(tokens: TokenStream) -> syn::Result<Self> {
        AttrArgs::parse.parse2(tokens)
    }

    /// Parses the arguments of an attribute found on the item (e.g. a stacked `#[publisher]`).
    /// A bare `#[publisher]` has no arguments.
    pub(crate) fn from_attribute(attr: &Attribute) -> syn::Result<Self> {
        match &attr.meta {
            syn::Meta::Path(_) => Ok(AttrArgs::default()),
            syn::Meta::List(list) => AttrArgs::from_tokens(list.tokens.clone()),
            syn::Meta::NameValue(nv) => Err(syn::Error::new(
                nv.eq_token.span,
                "expected parentheses, e.g. #[publisher(\"topic\")]",
            )),
        }
    }
}

/// The last segment of an attribute's path, e.g. `publisher` for `#[faststream::publisher]`.
pub(crate) fn attr_name(attr: &Attribute) -> Option<String> {
    attr.path().segments.last().map(|s| s.ident.to_string())
}

/// Whether `attr` is a `#[publisher]` (by its last path segment, however it was imported).
pub(crate) fn is_publisher(attr: &Attribute) -> bool {
    attr_name(attr).as_deref() == Some("publisher")
}

/// Whether `attr` is a `#[subscriber]` (by its last path segment).
pub(crate) fn is_subscriber(attr: &Attribute) -> bool {
    attr_name(attr).as_deref() == Some("subscriber")
}

/// Whether `attr` is one of the parameter markers `#[header]`, `#[payload]`, `#[extract]`.
pub(crate) fn is_param_marker(attr: &Attribute) -> bool {
    attr.path()
        .get_ident()
        .is_some_and(|i| i == "header" || i == "payload" || i == "extract")
}

/// The function's doc comment: every line trimmed, joined with `\n`, without leading or
/// trailing blank lines. `None` when there is no (non-blank) doc comment.
pub(crate) fn doc_string(attrs: &[Attribute]) -> Option<String> {
    let mut lines = Vec::new();
    for attr in attrs {
        if !attr.path().is_ident("doc") {
            continue;
        }
        if let syn::Meta::NameValue(nv) = &attr.meta {
            if let Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) = &nv.value
            {
                lines.extend(s.value().split('\n').map(|l| l.trim().to_owned()));
            }
        }
    }
    let text = lines.join("\n");
    let text = text.trim_matches('\n');
    (!text.is_empty()).then(|| text.to_owned())
}

/// Removes the macro's helper attributes (`#[publisher]` and parameter markers) from a function,
/// so it can be emitted as plain Rust when expansion fails.
pub(crate) fn strip_helpers(item: &mut syn::ItemFn, publishers_too: bool) {
    if publishers_too {
        item.attrs.retain(|a| !is_publisher(a));
    }
    for input in &mut item.sig.inputs {
        if let syn::FnArg::Typed(pat) = input {
            pat.attrs.retain(|a| !is_param_marker(a));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn topics_and_options() {
        let args =
            AttrArgs::from_tokens(quote!("a", "b", group_id = "g", ack_policy = manual)).unwrap();
        let literals: Vec<String> = args
            .topics
            .iter()
            .filter_map(|t| match t {
                Topic::Lit(lit) => Some(lit.value()),
                Topic::Expr(_) => None,
            })
            .collect();
        assert_eq!(literals, ["a", "b"]);
        assert_eq!(args.options.len(), 2);
        assert_eq!(args.options[1].key, "ack_policy");
        let args = AttrArgs::from_tokens(quote!(ORDERS, topics::REFUNDS, "x")).unwrap();
        assert!(matches!(
            args.topics.as_slice(),
            [Topic::Expr(_), Topic::Expr(_), Topic::Lit(_)]
        ));
    }

    #[test]
    fn empty_and_bad_arguments() {
        let args = AttrArgs::from_tokens(quote!()).unwrap();
        assert!(args.topics.is_empty() && args.options.is_empty());
        let Err(err) = AttrArgs::from_tokens(quote!(42, a::b = 1)) else {
            panic!("expected errors")
        };
        assert_eq!(err.into_iter().count(), 2);
        assert!(AttrArgs::from_tokens(quote!("a" "b")).is_err());
    }

    #[test]
    fn doc_comment_lines_are_trimmed() {
        let item: syn::ItemFn = syn::parse_quote! {
            ///
            ///   Registers users.
            ///   Second line.
            ///
            async fn f() {}
        };
        assert_eq!(
            doc_string(&item.attrs).as_deref(),
            Some("Registers users.\nSecond line.")
        );
        let bare: syn::ItemFn = syn::parse_quote!(
            async fn f() {}
        );
        assert_eq!(doc_string(&bare.attrs), None);
    }
}
