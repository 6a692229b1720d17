//! Procedural macros of faststream-rs: `#[subscriber]` and `#[publisher]`. Use them through
//! the `faststream` crate, whose documentation describes the attributes.
//!
//! The expansion runs in three steps, one module each: `parse` (tokens to a raw form),
//! `validate` (checks, collecting every error with its span) and `generate` (code).
//!
//! It only adds metadata (topics, group, docs, schemas) around the user's function and leaves
//! dispatch to the runtime's `Handler` trait; the generated code names only paths under
//! `::faststream`. It must never depend on the runtime crates themselves, nor decide anything by
//! a type's name: what a parameter is, the generated code asks the type's traits.
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

mod generate;
mod parse;
mod validate;

use proc_macro2::{Span, TokenStream};
use quote::quote;

/// Turns an `async fn` into a subscriber. See `faststream::subscriber`.
#[proc_macro_attribute]
pub fn subscriber(
    attr: proc_macro::TokenStream,
    item: proc_macro::TokenStream,
) -> proc_macro::TokenStream {
    expand_subscriber(attr.into(), item.into()).into()
}

/// Publishes a subscriber's return value to a topic. See `faststream::publisher`.
#[proc_macro_attribute]
pub fn publisher(
    attr: proc_macro::TokenStream,
    item: proc_macro::TokenStream,
) -> proc_macro::TokenStream {
    expand_publisher(attr.into(), item.into()).into()
}

/// `#[subscriber(attr)] item`: parse, validate, generate. On errors, the errors plus the
/// function without the macro's helper attributes, so the rest of the crate still resolves it.
fn expand_subscriber(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            let error = syn::Error::new(
                Span::call_site(),
                "#[subscriber] can only be applied to an `async fn`",
            );
            let error = error.into_compile_error();
            return quote!(#error #item);
        }
    };
    let parsed = parse::AttrArgs::from_tokens(attr);
    let checked = match parsed {
        Ok(args) => validate::subscriber(args, func.clone()),
        Err(parse_error) => {
            // Still check the function, so its errors show up together with the attribute's.
            let mut errors = parse::Errors::default();
            errors.push_error(parse_error);
            if let Err(more) = validate::subscriber(parse::AttrArgs::default(), func.clone()) {
                more.into_iter()
                    .filter(|e| !e.to_string().contains("needs at least one topic"))
                    .for_each(|e| errors.push_error(e));
            }
            errors.finish(()).and_then(|()| unreachable_subscriber())
        }
    };
    match checked {
        Ok(sub) => generate::subscriber(&sub),
        Err(errors) => fallback(errors, func, true),
    }
}

/// Only reached if a parse error disappeared, which cannot happen; kept panic-free.
fn unreachable_subscriber() -> syn::Result<validate::Subscriber> {
    Err(syn::Error::new(
        Span::call_site(),
        "invalid #[subscriber] arguments",
    ))
}

/// `#[publisher(attr)] item` when `#[publisher]` sits above `#[subscriber]`: moves itself (and
/// any other publisher above the subscriber, keeping their order) right after the
/// `#[subscriber]` attribute, which then collects them. Without a subscriber: an error.
fn expand_publisher(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            let error = syn::Error::new(
                Span::call_site(),
                "#[publisher] can only be applied to an `async fn` that also has #[subscriber]",
            )
            .into_compile_error();
            return quote!(#error #item);
        }
    };
    let Some(position) = func.attrs.iter().position(parse::is_subscriber) else {
        let error = syn::Error::new(
            Span::call_site(),
            "#[publisher] needs #[subscriber] on the same function: a publisher sends a subscriber's return value",
        );
        return fallback(error, func, false);
    };
    let this: syn::Attribute = syn::parse_quote!(#[::faststream::publisher(#attr)]);
    let mut moved = vec![this];
    let mut before = Vec::new();
    for attr in func.attrs.drain(..position) {
        if parse::is_publisher(&attr) {
            moved.push(attr);
        } else {
            before.push(attr);
        }
    }
    let rest: Vec<_> = func.attrs.drain(..).collect();
    let mut rest = rest.into_iter();
    func.attrs = before;
    func.attrs.extend(rest.next()); // the #[subscriber]
    func.attrs.extend(moved);
    func.attrs.extend(rest);
    quote!(#func)
}

/// The errors, plus the function as plain Rust (helper attributes removed).
fn fallback(errors: syn::Error, mut func: syn::ItemFn, strip_publishers: bool) -> TokenStream {
    parse::strip_helpers(&mut func, strip_publishers);
    let errors = errors.into_compile_error();
    quote!(#errors #func)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publisher_moves_below_subscriber_in_order() {
        let out = expand_publisher(
            quote!("a"),
            quote! {
                /// doc
                #[publisher("b")]
                #[subscriber("in")]
                #[publisher("c")]
                async fn f() {}
            },
        );
        let func: syn::ItemFn = syn::parse2(out).unwrap();
        let order: Vec<String> = func
            .attrs
            .iter()
            .map(|a| match &a.meta {
                syn::Meta::List(l) => l.tokens.to_string(),
                _ => parse::attr_name(a).unwrap_or_default(),
            })
            .collect();
        assert_eq!(order, ["doc", "\"in\"", "\"a\"", "\"b\"", "\"c\""]);
    }

    #[test]
    fn publisher_alone_is_an_error_but_keeps_the_function() {
        let out = expand_publisher(
            quote!("a"),
            quote!(
                async fn f(#[header("h")] h: String) {}
            ),
        )
        .to_string();
        assert!(out.contains("compile_error"));
        assert!(out.contains("needs #[subscriber]"));
        assert!(out.contains("async fn f"));
        assert!(!out.contains("header"));
    }

    #[test]
    fn bad_attribute_still_emits_function_and_all_errors() {
        let out = expand_subscriber(
            quote!("a" 1),
            quote!(
                fn f() {}
            ),
        )
        .to_string();
        assert!(out.contains("must be `async fn`"));
        assert!(out.contains("fn f"));
        assert!(!out.contains("at least one topic"));
    }

    #[test]
    fn generated_code_parses() {
        let out = expand_subscriber(
            quote!("in", group_id = "g"),
            quote! {
                /// Doc.
                #[publisher("out")]
                pub async fn handle(a: String, b: i64, #[header("h")] h: Option<String>, k: Key<String>) -> String { a }
            },
        );
        let file: syn::File = syn::parse2(out.clone()).unwrap();
        assert_eq!(file.items.len(), 3);
        let text = out.to_string();
        assert!(!text.contains("compile_error"));
        assert!(text.contains("__FaststreamPayload"));
        assert!(text.contains("\"Handle:Message:Payload\""));
    }
}
