-- One trajectory ($run_id, $sample_id) without its token arrays, with its evaluation row (gold answer) or its RL
-- rollout row (reward and its parts, advantage, kept) when it has one.
SELECT t.* EXCLUDE (token_ids, token_mask, image_offsets, image_grid_thw), r.answer AS gold, r.choice,
       r.category, r."index", o.step, o."group", o.member, o.reward, o.reward_reason, o.reward_format,
       o.reward_accuracy, o.reward_consistency, o.advantage, o.kept, o."limit"
FROM trajectories t
LEFT JOIN eval_results r ON r.run_id = t.run_id AND r.sample_id = t.sample_id
LEFT JOIN rl_rollouts o ON o.run = t.run_id AND o.sample_id = t.sample_id
WHERE t.run_id = $run_id AND t.sample_id = $sample_id
