"""Model checkpoints on disk: the built-in catalogue, manifests with checksums, offline verification and the
local listing. Nothing here talks to a network except the pull from a hub (`vlserve pull`)."""
