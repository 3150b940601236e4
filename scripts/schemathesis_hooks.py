"""What schemathesis needs to exercise this API: the WAV uploads
(greetings, music on hold) are sent as the raw bytes it generates, like any
binary body. Loaded through SCHEMATHESIS_HOOKS by scripts/schemathesis."""

import schemathesis

schemathesis.serializer.alias(["audio/wav"], "application/octet-stream")
