//! `and`, `or` and `not` of policies, and their futures.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::request::Parts;
use pin_project_lite::pin_project;

use super::policy::{Decision, Denied, Policy};
use crate::identity::Identity;

/// Both policies must allow. See [`Policy::and`].
#[derive(Clone, Debug)]
pub struct And<A, B> {
    a: A,
    b: B,
}

impl<A, B> And<A, B> {
    pub(crate) fn new(a: A, b: B) -> Self {
        And { a, b }
    }
}

impl<A: Policy, B: Policy> Policy for And<A, B> {
    type Future = PairFuture<A::Future, B::Future>;

    fn check(&self, identity: &Identity, request: &Parts) -> Decision<Self::Future> {
        match self.a.check(identity, request) {
            Decision::Deny(denied) => Decision::Deny(denied),
            Decision::Allow => self
                .b
                .check(identity, request)
                .map_future(|fb| PairFuture::second(fb, None)),
            Decision::Pending(fa) => match self.b.check(identity, request) {
                Decision::Deny(denied) => Decision::Deny(denied),
                Decision::Allow => Decision::Pending(PairFuture::first(Mode::All, fa, None)),
                Decision::Pending(fb) => {
                    Decision::Pending(PairFuture::first(Mode::All, fa, Some(Then::Pending(fb))))
                }
            },
        }
    }
}

/// Either policy must allow. See [`Policy::or`].
#[derive(Clone, Debug)]
pub struct Or<A, B> {
    a: A,
    b: B,
}

impl<A, B> Or<A, B> {
    pub(crate) fn new(a: A, b: B) -> Self {
        Or { a, b }
    }
}

/// Of two denials, the more severe; the right one on a tie, so that in
/// `role("admin").or(owner)` the owner check's message is reported.
/// `left` is `None` when there is no left denial (`and`).
fn pick(left: Option<Denied>, right: Denied) -> Denied {
    match left {
        Some(left) if left.severity() > right.severity() => left,
        _ => right,
    }
}

impl<A: Policy, B: Policy> Policy for Or<A, B> {
    type Future = PairFuture<A::Future, B::Future>;

    fn check(&self, identity: &Identity, request: &Parts) -> Decision<Self::Future> {
        match self.a.check(identity, request) {
            Decision::Allow => Decision::Allow,
            Decision::Deny(left) => match self.b.check(identity, request) {
                Decision::Allow => Decision::Allow,
                Decision::Deny(right) => Decision::Deny(pick(Some(left), right)),
                Decision::Pending(fb) => Decision::Pending(PairFuture::second(fb, Some(left))),
            },
            Decision::Pending(fa) => {
                let then = match self.b.check(identity, request) {
                    Decision::Allow => return Decision::Allow,
                    Decision::Deny(right) => Then::Denied(right),
                    Decision::Pending(fb) => Then::Pending(fb),
                };
                Decision::Pending(PairFuture::first(Mode::Any, fa, Some(then)))
            }
        }
    }
}

/// Whether a [`PairFuture`] needs both checks ([`And`]) or one ([`Or`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    All,
    Any,
}

/// What follows a pending left check.
enum Then<FB> {
    /// The right check denied without waiting (`or` only).
    Denied(Denied),
    /// The right check is pending too.
    Pending(FB),
}

pin_project! {
    /// The future of [`And`] and [`Or`]: the left check, then the right
    /// one if the left did not decide.
    pub struct PairFuture<FA, FB> {
        #[pin]
        state: PairState<FA, FB>,
    }
}

pin_project! {
    #[project = PairStateProj]
    enum PairState<FA, FB> {
        First {
            #[pin]
            fa: FA,
            mode: Mode,
            then: Option<Then<FB>>,
        },
        Second {
            #[pin]
            fb: FB,
            // The left denial of an `or`, reported if the right one is
            // less severe.
            left: Option<Denied>,
        },
    }
}

impl<FA, FB> PairFuture<FA, FB> {
    fn first(mode: Mode, fa: FA, then: Option<Then<FB>>) -> Self {
        PairFuture {
            state: PairState::First { fa, mode, then },
        }
    }

    fn second(fb: FB, left: Option<Denied>) -> Self {
        PairFuture {
            state: PairState::Second { fb, left },
        }
    }
}

impl<FA, FB> Future for PairFuture<FA, FB>
where
    FA: Future<Output = Result<(), Denied>>,
    FB: Future<Output = Result<(), Denied>>,
{
    type Output = Result<(), Denied>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                PairStateProj::First { fa, mode, then } => {
                    let result = ready!(fa.poll(cx));
                    // `and` is decided by a denial, `or` by an allow.
                    if result.is_err() == (*mode == Mode::All) {
                        return Poll::Ready(result);
                    }
                    let left = result.err();
                    match then.take() {
                        Some(Then::Pending(fb)) => state.set(PairState::Second { fb, left }),
                        Some(Then::Denied(right)) => return Poll::Ready(Err(pick(left, right))),
                        None => return Poll::Ready(left.map_or(Ok(()), Err)),
                    }
                }
                PairStateProj::Second { fb, left } => {
                    let Err(right) = ready!(fb.poll(cx)) else {
                        return Poll::Ready(Ok(()));
                    };
                    return Poll::Ready(Err(pick(left.take(), right)));
                }
            }
        }
    }
}

/// The negation of a policy. See [`Policy::not`].
#[derive(Clone, Debug)]
pub struct Not<A> {
    a: A,
}

impl<A> Not<A> {
    pub(crate) fn new(a: A) -> Self {
        Not { a }
    }
}

fn negate(result: Result<(), Denied>) -> Result<(), Denied> {
    match result {
        Ok(()) => Err(Denied::forbidden("access denied")),
        Err(denied) if denied.is_invertible() => Ok(()),
        Err(denied) => Err(denied),
    }
}

impl<A: Policy> Policy for Not<A> {
    type Future = NotFuture<A::Future>;

    fn check(&self, identity: &Identity, request: &Parts) -> Decision<Self::Future> {
        match self.a.check(identity, request) {
            Decision::Allow => Decision::Deny(Denied::forbidden("access denied")),
            Decision::Deny(denied) => negate(Err(denied)).into(),
            Decision::Pending(fut) => Decision::Pending(NotFuture { fut }),
        }
    }
}

pin_project! {
    /// The future of [`Not`].
    pub struct NotFuture<F> {
        #[pin]
        fut: F,
    }
}

impl<F> Future for NotFuture<F>
where
    F: Future<Output = Result<(), Denied>>,
{
    type Output = Result<(), Denied>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().fut.poll(cx).map(negate)
    }
}

macro_rules! opaque_debug {
    ($($name:ident<$($p:ident),+>),+) => {
        $(impl<$($p),+> fmt::Debug for $name<$($p),+> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        })+
    };
}

opaque_debug!(PairFuture<FA, FB>, NotFuture<F>);

/// Both `a` and `b` must allow: the same as `a.and(b)`.
pub fn and<A: Policy, B: Policy>(a: A, b: B) -> And<A, B> {
    a.and(b)
}

/// `a` or `b` must allow: the same as `a.or(b)`.
pub fn or<A: Policy, B: Policy>(a: A, b: B) -> Or<A, B> {
    a.or(b)
}

/// Allows what `policy` denies for lack of a right, and denies what it
/// allows: the same as `policy.not()`.
pub fn not<P: Policy>(policy: P) -> Not<P> {
    policy.not()
}
