//! Code generation.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, ItemFn, ReturnType, Type};

use crate::attr::{Args, ErrorTypeAttr, Kind};

/// Entry point of both attributes: parse, check, generate; any error becomes `compile_error!`.
pub(crate) fn attribute(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let args = match Args::parse(kind, args) {
        Ok(args) => args,
        Err(err) => return with_item(err, item),
    };
    let func = match parse_fn(kind, item.clone()) {
        Ok(func) => func,
        Err(err) => return with_item(err, item),
    };
    match instrument(kind, &args, func) {
        Ok(tokens) => tokens,
        Err(err) => with_item(err, item),
    }
}

/// Emits the error next to the unchanged item, so that one mistake does not cascade into
/// "cannot find function" errors at every call site.
fn with_item(err: syn::Error, item: TokenStream) -> TokenStream {
    let err = err.to_compile_error();
    quote!(#err #item)
}

fn parse_fn(kind: Kind, item: TokenStream) -> syn::Result<ItemFn> {
    match syn::parse2::<ItemFn>(item.clone()) {
        Ok(func) => Ok(func),
        Err(_) => {
            if let Ok(decl) = syn::parse2::<syn::TraitItemFn>(item.clone()) {
                return Err(syn::Error::new_spanned(
                    decl.sig,
                    format_args!(
                        "{} needs a function body; put it on the trait's implementations",
                        kind.attr()
                    ),
                ));
            }
            let first = item
                .into_iter()
                .next()
                .map_or_else(Span::call_site, |t| t.span());
            Err(syn::Error::new(
                first,
                format_args!(
                    "{} can only be applied to functions and methods",
                    kind.attr()
                ),
            ))
        }
    }
}

fn instrument(kind: Kind, args: &Args, func: ItemFn) -> syn::Result<TokenStream> {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    if let Some(constness) = &sig.constness {
        return Err(syn::Error::new_spanned(
            constness,
            format_args!("{} cannot be applied to a `const fn`", kind.attr()),
        ));
    }

    let krate = args
        .krate
        .as_ref()
        .map_or_else(|| quote!(::orderscope), ToTokens::to_token_stream);
    let private = quote!(#krate::__private);
    let name = args
        .name
        .as_ref()
        .map_or_else(|| sig.ident.to_string(), syn::LitStr::value);
    let track = args.track_concurrency;

    let is_result = match &args.result {
        Some(lit) => lit.value,
        None => returns_result(&sig.output),
    };
    let ret_span = match &sig.output {
        ReturnType::Default => sig.ident.span(),
        ReturnType::Type(_, ty) => ty.span(),
    };

    // The body's statements are spliced into a block of our own, never the user's block as the
    // tail of ours: `{ { Ok(()) } }` would make rustc report `unused_braces` on the user's
    // braces. The user's inner attributes (`#![allow(..)]`) go on the new function body.
    let (outer_attrs, inner_attrs): (Vec<_>, Vec<_>) = attrs
        .into_iter()
        .partition(|attr| matches!(attr.style, syn::AttrStyle::Outer));
    let fake_return = fake_return_edge(&sig.output);
    let stmts = &block.stmts;
    let body = quote!({ #fake_return #(#stmts)* });

    let classify = if is_result {
        let error = quote_spanned!(ret_span=> #private::result_error(&__orderscope_ret));
        quote! {
            match #error {
                ::core::option::Option::None => __orderscope_call.ok(),
                ::core::option::Option::Some(__orderscope_err) => {
                    #[allow(unused_imports)]
                    use #private::{ViaDefault as _, ViaErrorType as _};
                    __orderscope_call.error(
                        (&#private::ErrorWrap(__orderscope_err)).__orderscope_error_type(),
                    )
                }
            }
        }
    } else {
        quote!(__orderscope_call.ok();)
    };

    let enter = quote! {
        let __orderscope_call = {
            static __ORDERSCOPE_RED: #private::FunctionMetrics =
                #private::FunctionMetrics::new(#name, ::core::module_path!())
                    .track_concurrency(#track);
            __ORDERSCOPE_RED.start()
        };
    };

    let is_async = sig.asyncness.is_some();
    let run = match (kind, is_async) {
        (Kind::Red, false) => quote! {
            #[allow(clippy::redundant_closure_call)]
            let __orderscope_ret = (move || #body)();
        },
        (Kind::Red, true) => quote! {
            let __orderscope_ret = async move #body.await;
        },
        (Kind::OrderHandler, _) => {
            let order = args.order.as_ref().expect("checked by Args::parse");
            let order = if args.fallback {
                quote_spanned!(order.span()=> #private::current_order_or(|| #private::as_order(&(#order))))
            } else {
                quote_spanned!(order.span()=> #private::as_order(&(#order)))
            };
            let span = quote! {
                let __orderscope_order = #order;
                let __orderscope_span = #private::tracing::info_span!(
                    #name,
                    order.id = #private::tracing::field::Empty,
                    order.channel = #private::tracing::field::Empty,
                    order.deadline = #private::tracing::field::Empty,
                    order.priority = #private::tracing::field::Empty,
                    order.created_at = #private::tracing::field::Empty,
                );
                #private::record_order(&__orderscope_span, __orderscope_order.as_ref());
            };
            if is_async {
                quote! {
                    #span
                    let __orderscope_ret = #private::scope_future(
                        async move #body,
                        __orderscope_span,
                        __orderscope_order.as_ref(),
                    )
                    .await;
                }
            } else {
                quote! {
                    #span
                    let __orderscope_ret = {
                        let __orderscope_entered = __orderscope_span.enter();
                        let __orderscope_scope =
                            #private::attach_order(__orderscope_order.as_ref());
                        #[allow(clippy::redundant_closure_call)]
                        (move || #body)()
                    };
                }
            }
        }
    };

    Ok(quote! {
        #(#outer_attrs)*
        #vis #sig {
            #(#inner_attrs)*
            #enter
            #run
            #classify
            __orderscope_ret
        }
    })
}

/// A never-taken `return` of the declared type, so that `?` and `return` inside the wrapped body
/// infer against the function's return type (the technique of `tracing-attributes`).
///
/// Left out where a `let` cannot name the type: `impl Trait` and `!`.
fn fake_return_edge(output: &ReturnType) -> TokenStream {
    let ty = match output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => {
            if mentions_impl_or_never(ty) {
                return TokenStream::new();
            }
            ty.to_token_stream()
        }
    };
    quote! {
        #[allow(
            unreachable_code,
            clippy::diverging_sub_expression,
            clippy::let_unit_value,
            clippy::unreachable,
            clippy::empty_loop,
            clippy::needless_return
        )]
        if false {
            let __orderscope_fake_return: #ty = loop {};
            return __orderscope_fake_return;
        }
    }
}

fn mentions_impl_or_never(ty: &Type) -> bool {
    let mut found = false;
    let mut stack: Vec<proc_macro2::TokenTree> = ty.to_token_stream().into_iter().collect();
    while let Some(tt) = stack.pop() {
        match tt {
            proc_macro2::TokenTree::Ident(ident) if ident == "impl" => found = true,
            proc_macro2::TokenTree::Punct(p) if p.as_char() == '!' => found = true,
            proc_macro2::TokenTree::Group(g) => stack.extend(g.stream()),
            _ => {}
        }
    }
    found
}

/// A return type whose path ends in `Result` (`Result<T, E>`, `io::Result<T>`,
/// `anyhow::Result<T>`, `ParseResult<T>`) is classified as a result.
fn returns_result(output: &ReturnType) -> bool {
    let ReturnType::Type(_, ty) = output else {
        return false;
    };
    let mut ty: &Type = ty;
    while let Type::Paren(p) = ty {
        ty = &p.elem;
    }
    match ty {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident.to_string().ends_with("Result")),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// #[derive(ErrorType)]
// ---------------------------------------------------------------------------------------------

pub(crate) fn derive_error_type(input: TokenStream) -> TokenStream {
    match syn::parse2::<DeriveInput>(input).and_then(|input| error_type_impl(&input)) {
        Ok(tokens) => tokens,
        Err(err) => err.to_compile_error(),
    }
}

fn error_type_impl(input: &DeriveInput) -> syn::Result<TokenStream> {
    let type_attr = ErrorTypeAttr::parse(&input.attrs, true)?;
    let krate = type_attr
        .krate
        .as_ref()
        .map_or_else(|| quote!(::orderscope), ToTokens::to_token_stream);
    let ident = &input.ident;
    let body = match &input.data {
        Data::Enum(data) => {
            if let Some(name) = &type_attr.name {
                return Err(syn::Error::new(
                    name.span(),
                    "on an enum, `name` goes on each variant: #[error_type(name = \"...\")]",
                ));
            }
            let mut arms = Vec::new();
            for variant in &data.variants {
                let attr = ErrorTypeAttr::parse(&variant.attrs, false)?;
                let v = &variant.ident;
                let arm = if let Some(span) = attr.transparent {
                    if variant.fields.len() != 1 {
                        return Err(syn::Error::new(
                            span,
                            "`transparent` needs a variant with exactly one field",
                        ));
                    }
                    let field = format_ident!("__orderscope_inner");
                    let pattern = match &variant.fields {
                        Fields::Named(f) => {
                            let name = f.named[0].ident.as_ref().expect("named field");
                            quote!(Self::#v { #name: #field })
                        }
                        _ => quote!(Self::#v(#field)),
                    };
                    quote!(#pattern => #krate::__private::ErrorType::error_type(#field),)
                } else {
                    let label = attr
                        .name
                        .as_ref()
                        .map_or_else(|| snake_case(&v.to_string()), syn::LitStr::value);
                    let pattern = match &variant.fields {
                        Fields::Named(_) => quote!(Self::#v { .. }),
                        Fields::Unnamed(_) => quote!(Self::#v(..)),
                        Fields::Unit => quote!(Self::#v),
                    };
                    quote!(#pattern => #label,)
                };
                arms.push(arm);
            }
            quote!(match self { #(#arms)* })
        }
        Data::Struct(_) => {
            let label = type_attr
                .name
                .as_ref()
                .map_or_else(|| snake_case(&ident.to_string()), syn::LitStr::value);
            quote!(#label)
        }
        Data::Union(u) => {
            return Err(syn::Error::new_spanned(
                u.union_token,
                "#[derive(ErrorType)] supports enums and structs",
            ));
        }
    };
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::__private::ErrorType for #ident #ty_generics #where_clause {
            fn error_type(&self) -> &'static str {
                #body
            }
        }
    })
}

/// `OutOfStock` → `out_of_stock`, `HTTPError` → `http_error`, `Io2Failed` → `io2_failed`.
pub(crate) fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1).copied();
            let boundary = match prev {
                None | Some('_') => false,
                Some(p) if p.is_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_uppercase() => next.is_some_and(char::is_lowercase),
                Some(_) => false,
            };
            if boundary {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::snake_case;

    #[test]
    fn snake_case_of_variant_names() {
        assert_eq!(snake_case("OutOfStock"), "out_of_stock");
        assert_eq!(snake_case("HTTPError"), "http_error");
        assert_eq!(snake_case("Io"), "io");
        assert_eq!(snake_case("Io2Failed"), "io2_failed");
        assert_eq!(snake_case("already_snake"), "already_snake");
        assert_eq!(snake_case("ABC"), "abc");
    }
}
