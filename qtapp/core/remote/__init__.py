"""Models on the Hugging Face Hub, before and while downloading them: which GGUF files a repo
holds (split sets as one model), their headers read with HTTP range requests and planned like
local files, and the verified download of the chosen one into the standard Hugging Face cache.

Nothing here touches the network unless the caller passes the user's permission (the 'Allow
downloads' setting or ``--online``); all HTTP goes through ``huggingface_hub``."""
