"""The MMTalker network: audio -> encoders -> fusion -> sampler/regressor -> displacements."""
