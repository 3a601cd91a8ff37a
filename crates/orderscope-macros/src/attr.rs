//! Parsing of the attribute arguments.

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{Expr, LitBool, LitStr, Path};

/// Which attribute is being parsed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Red,
    OrderHandler,
}

impl Kind {
    pub(crate) fn attr(self) -> &'static str {
        match self {
            Kind::Red => "#[red]",
            Kind::OrderHandler => "#[order_handler]",
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Kind::Red => "`name`, `track_concurrency`, `result` or `crate`",
            Kind::OrderHandler => {
                "`order`, `fallback_order`, `name`, `track_concurrency`, `result` or `crate`"
            }
        }
    }
}

/// The arguments of `#[red(...)]` and `#[order_handler(...)]`.
pub(crate) struct Args {
    /// `name = "..."`: the `function` label (and the span name); defaults to the fn's name.
    pub(crate) name: Option<LitStr>,
    /// `track_concurrency`: record `function_calls_concurrent`; defaults to off.
    pub(crate) track_concurrency: bool,
    /// `result = true|false`: overrides the detection of a `Result` return type.
    pub(crate) result: Option<LitBool>,
    /// `crate = "..."`: path to the `orderscope` crate; defaults to `::orderscope`.
    pub(crate) krate: Option<Path>,
    /// `order = <expr>` or `fallback_order = <expr>` (`#[order_handler]` only).
    pub(crate) order: Option<Expr>,
    /// The order came as `fallback_order`: used only when no order is in scope already.
    pub(crate) fallback: bool,
}

impl Args {
    pub(crate) fn parse(kind: Kind, tokens: proc_macro2::TokenStream) -> syn::Result<Self> {
        let mut args = Args {
            name: None,
            track_concurrency: false,
            result: None,
            krate: None,
            order: None,
            fallback: false,
        };
        let mut seen_track = false;
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("name") {
                reject_duplicate(&meta, args.name.is_some())?;
                let lit: LitStr = string_value(&meta, "name = \"...\"")?;
                if lit.value().is_empty() {
                    return Err(syn::Error::new(lit.span(), "`name` must not be empty"));
                }
                args.name = Some(lit);
            } else if meta.path.is_ident("track_concurrency") {
                reject_duplicate(&meta, seen_track)?;
                seen_track = true;
                args.track_concurrency = if meta.input.peek(syn::Token![=]) {
                    bool_value(&meta, "track_concurrency = true")?.value
                } else {
                    true
                };
            } else if meta.path.is_ident("result") {
                reject_duplicate(&meta, args.result.is_some())?;
                args.result = Some(bool_value(&meta, "result = true")?);
            } else if meta.path.is_ident("crate") {
                reject_duplicate(&meta, args.krate.is_some())?;
                let lit: LitStr = string_value(&meta, "crate = \"...\"")?;
                args.krate = Some(lit.parse().map_err(|_| {
                    syn::Error::new(lit.span(), "`crate` must be a path, like \"::orderscope\"")
                })?);
            } else if meta.path.is_ident("order") || meta.path.is_ident("fallback_order") {
                let fallback = meta.path.is_ident("fallback_order");
                let option = if fallback { "fallback_order" } else { "order" };
                if kind != Kind::OrderHandler {
                    return Err(meta.error(format_args!(
                        "`{option}` is accepted by #[order_handler], not by #[red]"
                    )));
                }
                if args.order.is_some() {
                    return Err(meta.error("give the order once: `order` or `fallback_order`"));
                }
                if !meta.input.peek(syn::Token![=]) {
                    return Err(meta.error(format_args!("expected `{option} = <expression>`")));
                }
                args.order = Some(meta.value()?.parse()?);
                args.fallback = fallback;
            } else {
                let name = meta
                    .path
                    .get_ident()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| "this".to_owned());
                return Err(meta.error(format_args!(
                    "unknown option `{name}` of {}; expected {}",
                    kind.attr(),
                    kind.expected()
                )));
            }
            Ok(())
        });
        parser.parse2(tokens)?;
        if kind == Kind::OrderHandler && args.order.is_none() {
            return Err(syn::Error::new(
                Span::call_site(),
                "#[order_handler] needs the order: `#[order_handler(order = <expression>)]` (or \
                 `fallback_order = <expression>`)",
            ));
        }
        Ok(args)
    }
}

fn reject_duplicate(meta: &ParseNestedMeta<'_>, seen: bool) -> syn::Result<()> {
    if seen {
        Err(meta.error("this option is given twice"))
    } else {
        Ok(())
    }
}

fn string_value(meta: &ParseNestedMeta<'_>, form: &str) -> syn::Result<LitStr> {
    let name = meta
        .path
        .get_ident()
        .map(ToString::to_string)
        .unwrap_or_default();
    if !meta.input.peek(syn::Token![=]) {
        return Err(meta.error(format_args!("expected `{form}`")));
    }
    let value = meta.value()?;
    let expr: Expr = value.parse()?;
    match expr {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(lit),
            ..
        }) => Ok(lit),
        other => Err(syn::Error::new_spanned(
            other,
            format_args!("`{name}` takes a string literal: `{form}`"),
        )),
    }
}

fn bool_value(meta: &ParseNestedMeta<'_>, form: &str) -> syn::Result<LitBool> {
    let name = meta
        .path
        .get_ident()
        .map(ToString::to_string)
        .unwrap_or_default();
    let value = meta.value()?;
    let expr: Expr = value.parse()?;
    match expr {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Bool(lit),
            ..
        }) => Ok(lit),
        other => Err(syn::Error::new_spanned(
            other,
            format_args!("`{name}` takes `true` or `false`: `{form}`"),
        )),
    }
}

/// Options of `#[derive(ErrorType)]`, from `#[error_type(...)]` attributes.
#[derive(Default)]
pub(crate) struct ErrorTypeAttr {
    /// `name = "..."`.
    pub(crate) name: Option<LitStr>,
    /// `transparent`: delegate to the single field.
    pub(crate) transparent: Option<Span>,
    /// `crate = "..."` (on the type only).
    pub(crate) krate: Option<Path>,
}

impl ErrorTypeAttr {
    /// Parses every `#[error_type(...)]` in `attrs`; `on_type` allows `crate`.
    pub(crate) fn parse(attrs: &[syn::Attribute], on_type: bool) -> syn::Result<Self> {
        let mut out = ErrorTypeAttr::default();
        for attr in attrs.iter().filter(|a| a.path().is_ident("error_type")) {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("name") {
                    reject_duplicate(&meta, out.name.is_some())?;
                    let lit = string_value(&meta, "name = \"...\"")?;
                    if lit.value().is_empty() {
                        return Err(syn::Error::new(lit.span(), "`name` must not be empty"));
                    }
                    out.name = Some(lit);
                } else if meta.path.is_ident("transparent") && !on_type {
                    reject_duplicate(&meta, out.transparent.is_some())?;
                    out.transparent = Some(meta.path.get_ident().map_or_else(Span::call_site, |i| i.span()));
                } else if meta.path.is_ident("crate") && on_type {
                    reject_duplicate(&meta, out.krate.is_some())?;
                    let lit = string_value(&meta, "crate = \"...\"")?;
                    out.krate = Some(lit.parse()?);
                } else {
                    return Err(meta.error(if on_type {
                        "unknown option of #[error_type] on a type; expected `name` or `crate`"
                    } else {
                        "unknown option of #[error_type] on a variant; expected `name` or `transparent`"
                    }));
                }
                Ok(())
            })?;
        }
        if let (Some(_), Some(span)) = (&out.name, out.transparent) {
            return Err(syn::Error::new(
                span,
                "`transparent` and `name` exclude each other",
            ));
        }
        Ok(out)
    }
}
