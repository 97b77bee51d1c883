"""Every key that travels between fl_app's ServerApp and its ClientApps, in round order.

Flower carries them in the config records of its messages (legacy `FitIns.config`,
`EvaluateIns.config`, `GetPropertiesRes.properties`); the arrays are the parameters.
Reading this module alone tells what one round sends.

Every mode, each round:
  fit instruction   ROUND_KEY, SAMPLED_KEY; parameters = the global model
                    (strategy=fedprox: PROXIMAL_MU_KEY)
  fit result        parameters = the trained model, num_examples = the client's weight
                    (its example count; 1 under DP), metrics = training loss/accuracy
  evaluate          parameters = the global model; reply = loss, metrics, and the
                    metrics' summed state (METRIC_STATE_KEY, METRIC_SIGNATURE_KEY; not
                    under client-level DP), from which the server computes the pooled
                    values (fl_app.ml.metric_states)
  (strategy.evaluate_with_fit: the fit instruction carries EVALUATE_FIRST_KEY and the
  fit result the client's evaluation of the model it received, as PRIOR_PREFIX metrics;
  only the last round sends evaluate instructions)
  (dp.level=record: fit results carry DP_EPSILON, DP_STEPS, DP_NOISE and DP_HOLDER; the
  server keeps them per holder and strips them from the aggregated fit metrics; in
  simulation the fit instruction carries DP_LEDGER_DIR_KEY)

An HE round (privacy=he), in order:
  1. example-count query   GET_PROPERTIES, before each fit step, to every connected
                           client not asked before, in one batch (privacy=none too);
                           reply {EXAMPLES_KEY: n_k, EVAL_EXAMPLES_KEY: the weight its
                           evaluations may claim}
  2. fit instruction       REFERENCE_KEY = R, the sampled clients' total of n_k;
                           RUN_TAG_KEY, to which (with ROUND_KEY) the update is bound;
                           ENCRYPTED_KEY = whether the parameters are an encrypted
                           aggregate (False in round 1: the initial model is public);
                           SECRET_PATH_KEY in simulation only, when the server
                           generated the run's keys
  3. fit result            parameters = an encrypted update of (n_k / R) x weights
                           (fl_app.crypto.payload), its header bound to
                           "<run tag>/<round>"; num_examples = n_k, the count announced
                           in step 1 (a result that differs is refused)
  4. next instruction      parameters = the encrypted aggregate, whose header carries
                           its total weight sum(n_k) / R; clients decrypt and divide
  (evaluate instructions carry ENCRYPTED_KEY and REFERENCE_KEY too)

Federated statistics (preprocess: standardize without public statistics, privacy=none
or he; fl_app.fl.statistics): the first example-count query carries STATS_REQUEST_KEY
and each reply STATS_KEY; once fixed, every fit and evaluate instruction carries
STATS_TOTAL_KEY.

SecAgg+ (privacy=secagg) adds Flower's own stage keys to fit messages, handled by
`secaggplus_mod` (fl_app.fl.mods).
"""

# ---------------------------------------------------------------- instruction config
ROUND_KEY = "server-round"  # int: the run's round number (seeds local shuffling)
SAMPLED_KEY = "fit-clients"  # int: clients sampled in this fit round (DP noise is split m ways)
ENCRYPTED_KEY = "he-encrypted"  # bool: the parameters are an encrypted aggregate payload
REFERENCE_KEY = "he-weight-reference"  # float R: clients encrypt (n_k / R) * weights
RUN_TAG_KEY = "he-run-tag"  # str: this run's random tag; updates are bound to "<tag>/<round>"
SECRET_PATH_KEY = "he-secret-context"  # str, simulation only: where the run's keys were made
EVALUATE_FIRST_KEY = "evaluate-first"  # bool: evaluate the received model before training
PROXIMAL_MU_KEY = "proximal_mu"  # float, strategy=fedprox: Flower's FedProx sends it
# str, simulation only (dp.level=record): the run directory's folder of the simulated
# holders' DP ledgers (a deployed holder ignores it and keeps its own, NODE_LEDGER_DIR_KEY)
DP_LEDGER_DIR_KEY = "dp-ledger-dir"
# bytes: the holders' summed statistics (encrypted under HE), fl_app.fl.statistics
STATS_TOTAL_KEY = "statistics-total"
# str, in the example-count query: send your statistics, bound to this ("" in plaintext)
STATS_REQUEST_KEY = "statistics-request"

# ---------------------------------------------------------------- fit result metrics
# str: why the client refused the aggregate it received (it did not train or evaluate on
# it; a fit result carrying it has no parameters and weight 0). When most clients of a
# round refuse, that aggregate is not the global model (fl_app.fl.modes.he).
REFUSED_KEY = "aggregate-refused"
PRIOR_PREFIX = "prior_"  # the evaluation of the received model: prior_loss, prior_<metric>,
PRIOR_EXAMPLES = "prior_examples"  # ... its test examples (the weight of its mean)
# the state of the compiled metrics after an evaluation (evaluate replies, and
# PRIOR_PREFIX-ed in fit results): float64 bytes, and what they are (name:class:size;...)
METRIC_STATE_KEY = "metric_state"
METRIC_SIGNATURE_KEY = "metric_signature"
# dp.level=record: what the holder's records have spent, by its own ledger
DP_EPSILON = "dp_epsilon"  # float: ε at dp.delta over all its DP-SGD steps so far
DP_STEPS = "dp_steps"  # int: those steps
DP_NOISE = "dp_noise_multiplier"  # float: its noise multiplier (calibrated or dp.*)
DP_HOLDER = "dp_holder"  # str: the holder's id in its ledger (stable across runs and restarts)

# ---------------------------------------------------------------- client properties
EXAMPLES_KEY = "num-examples"  # int n_k: the client's aggregation weight
EVAL_EXAMPLES_KEY = "num-eval-examples"  # int: the most its evaluation may weigh (test split)
STATS_KEY = "statistics"  # bytes: its training split's moments as digits (encrypted under HE)

# ---------------------------------------------------------------- SuperNode node config
NODE_DATA_KEY = "data-path"  # the node's own data file (NPZ or CSV)
NODE_SECRET_KEY = "he-secret-context"  # the HE secret context (clients only)
NODE_LEDGER_DIR_KEY = "dp-ledger-dir"  # where the node keeps its DP ledger (default: beside data)
