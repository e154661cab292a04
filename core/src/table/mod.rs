//! Tables over what Ember writes, read the way their writer committed them: a stream's output
//! through its sink log ([`sink_log`]).

pub mod sink_log;
