"""Node-config keys a deployed SuperNode is started with (`--node-config`)."""

NODE_DATA_KEY = "data-path"  # the node's own data file (NPZ or CSV)
NODE_SECRET_KEY = "he-secret-context"  # the HE secret context (clients only)
