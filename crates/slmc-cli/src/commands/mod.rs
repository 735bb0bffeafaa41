//! One module per subcommand.

pub mod bench;
pub mod check;
pub mod eval;
pub mod export;
pub mod generate;
pub mod inspect;
pub mod inspect_adapter;
pub mod recipe_args;
pub mod report;
pub mod run;
pub mod tokenizer;
