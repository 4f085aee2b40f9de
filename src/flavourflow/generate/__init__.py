"""The `generate` stage: Pythia 8 events -> anti-kt R=0.4 jets with truth labels and smeared
tracks -> one ROOT shard (TTree `events`), written atomically with uproot."""
