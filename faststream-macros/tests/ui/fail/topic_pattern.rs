use faststream::subscriber;

const TOPIC_COUNT: u32 = 3;

// A pattern replaces the topics: not both.
#[subscriber("orders", pattern = "orders-{region}")]
async fn topic_and_pattern(_body: String) {}

// Nor a topic from the environment.
#[subscriber(env = "ORDERS_TOPIC", default = "orders", pattern = "orders-{region}")]
async fn env_and_pattern(_body: String) {}

// A template matches topic names: no regular-expression syntax unless it starts with `^`.
#[subscriber(pattern = "orders-*")]
async fn star(_body: String) {}

// A regular expression must compile.
#[subscriber(pattern = "^orders-(")]
async fn bad_regex(_body: String) {}

// Parameters are `{name}`, each name once.
#[subscriber(pattern = "orders-{region")]
async fn unclosed(_body: String) {}

#[subscriber(pattern = "orders-{}")]
async fn unnamed(_body: String) {}

#[subscriber(pattern = "{region}-{region}")]
async fn twice(_body: String) {}

#[subscriber(pattern = "")]
async fn empty(_body: String) {}

#[subscriber(pattern = 42)]
async fn number(_body: String) {}

// A constant pattern converts into a `String`; the error points at it.
#[subscriber(pattern = TOPIC_COUNT)]
async fn not_a_string(_body: String) {}

fn main() {}
