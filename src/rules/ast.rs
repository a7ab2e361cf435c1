//! The syntax tree of a condition, as the parser builds it. Every node keeps
//! its byte span in the condition's text so later stages can point at it.

/// Byte range `(start, end)` in the condition text.
pub type Span = (usize, usize);

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// A bare identifier: a macro reference.
    Macro(String, Span),
    Compare(Box<Compare>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Compare {
    pub lhs: Operand,
    pub op: Op,
    pub op_span: Span,
    pub rhs: Rhs,
}

/// Something that yields values for an event: a field, or a transformer
/// applied to operands.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Field(FieldRef),
    Transform(Transform),
    /// A quoted string or number inside a transformer's arguments.
    Literal(String, Span),
}

impl Operand {
    pub fn span(&self) -> Span {
        match self {
            Operand::Field(f) => f.span,
            Operand::Transform(t) => t.span,
            Operand::Literal(_, s) => *s,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldRef {
    pub name: String,
    pub arg: Option<String>,
    /// Span of the whole `name[arg]`.
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Transform {
    pub kind: TransformKind,
    pub args: Vec<Operand>,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransformKind {
    ToLower,
    ToUpper,
    B64,
    Basename,
    Len,
    Join,
    Concat,
}

impl TransformKind {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "tolower" => TransformKind::ToLower,
            "toupper" => TransformKind::ToUpper,
            "b64" => TransformKind::B64,
            "basename" => TransformKind::Basename,
            "len" => TransformKind::Len,
            "join" => TransformKind::Join,
            "concat" => TransformKind::Concat,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            TransformKind::ToLower => "tolower",
            TransformKind::ToUpper => "toupper",
            TransformKind::B64 => "b64",
            TransformKind::Basename => "basename",
            TransformKind::Len => "len",
            TransformKind::Join => "join",
            TransformKind::Concat => "concat",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Exists,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    IContains,
    BContains,
    StartsWith,
    BStartsWith,
    EndsWith,
    Glob,
    IGlob,
    Regex,
    In,
    Intersects,
    /// `innet`: an address inside one of the networks (a Saker extension).
    InNet,
    PMatch,
}

impl Op {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "exists" => Op::Exists,
            "=" | "==" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "contains" => Op::Contains,
            "icontains" => Op::IContains,
            "bcontains" => Op::BContains,
            "startswith" => Op::StartsWith,
            "bstartswith" => Op::BStartsWith,
            "endswith" => Op::EndsWith,
            "glob" => Op::Glob,
            "iglob" => Op::IGlob,
            "regex" => Op::Regex,
            "in" => Op::In,
            "intersects" => Op::Intersects,
            "pmatch" => Op::PMatch,
            "innet" => Op::InNet,
            _ => return None,
        })
    }

    /// Operators whose right-hand side is a list of values.
    pub fn takes_list(self) -> bool {
        matches!(self, Op::In | Op::Intersects | Op::InNet | Op::PMatch)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Exists => "exists",
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Contains => "contains",
            Op::IContains => "icontains",
            Op::BContains => "bcontains",
            Op::StartsWith => "startswith",
            Op::BStartsWith => "bstartswith",
            Op::EndsWith => "endswith",
            Op::Glob => "glob",
            Op::IGlob => "iglob",
            Op::Regex => "regex",
            Op::In => "in",
            Op::Intersects => "intersects",
            Op::PMatch => "pmatch",
            Op::InNet => "innet",
        }
    }
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Rhs {
    /// `exists` takes none.
    None,
    Value(Value),
    /// `(a, b, c)`; elements that name a list are expanded when compiling.
    List(Vec<Value>, Span),
    /// `in name` without parentheses.
    ListName(String, Span),
    /// `val(field)` or a transformer: compare with another field's value.
    Operand(Operand),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub text: String,
    /// Quoted strings are never taken for list names.
    pub quoted: bool,
    pub span: Span,
}
