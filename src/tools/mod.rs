//! Development and demonstration tools built into the `usher` binary: [`bench`]
//! (`usher bench`, complete sign-ins measured over HTTP), [`demo`] (`usher demo`, the
//! Thrift sample shop around the example config) and [`standin`] (local stand-ins for
//! Google and GitHub, which the demo, the bench and the tests sign in against). They
//! ship in the binary so that `usher demo` works from a fresh clone and `usher bench`
//! can be pointed at a deployment with the binary already there. They sit on top of
//! the product and may use any of it; product modules never import them, so the
//! identity provider builds and behaves the same whatever the tools do.

pub mod bench;
pub mod demo;
pub mod standin;
