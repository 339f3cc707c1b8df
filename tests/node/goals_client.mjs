// Pipedrive's official Node.js client (npm `pipedrive`, pinned in package.json) against pd_app's proxy.
//
// The client is configured the way its README shows for API-token use, with nothing else: `apiKey` (here a
// pd_app partner key, which the client sends as `x-api-token`) and `basePath` (pd_app's /api/v1 URL instead of
// Pipedrive's). No custom headers, no interceptors, no other options.
//
// It runs the five Goals operations in order: addGoal, getGoals, getGoalResult, updateGoal, deleteGoal, then
// getGoals once more, and prints one JSON object to stdout: each step's arguments and what the client returned
// (the response body it resolves with), or, for the step that failed, what it rejected with. It stops at the
// first failure and then exits with status 1. With `--keep` it stops after updateGoal, leaving the goal in place
// to be looked at.
//
//   PD_APP_BASE_PATH=http://localhost:5000/api/v1 PD_APP_API_KEY=pdk_... PD_GOAL_ASSIGNEE_ID=2001 \
//     node tests/node/goals_client.mjs
//
// tests/test_official_node_client.py runs it against the app under gunicorn and the built-in sandbox.

import { Configuration, GoalsApi } from "pipedrive/v1";

function required(name) {
  const value = process.env[name];
  if (!value) {
    process.stderr.write(`${name} is required\n`);
    process.exit(2);
  }
  return value;
}

const basePath = required("PD_APP_BASE_PATH");
const apiKey = required("PD_APP_API_KEY");
const assigneeId = Number(required("PD_GOAL_ASSIGNEE_ID"));

const keep = process.argv.slice(2).includes("--keep");

const goalsApi = new GoalsApi(new Configuration({ basePath, apiKey }));

// Last year, whole: a period that has fully elapsed, so the results have progress to show.
const year = new Date().getUTCFullYear() - 1;
const periodStart = `${year}-01-01`;
const periodEnd = `${year}-12-31`;

// What a rejection carries: the client rejects with the response body when there is one (Pipedrive's error
// envelope), else with the transport error.
function describe(error) {
  if (error instanceof Error) {
    return { name: error.name, message: error.message, code: error.code ?? null };
  }
  return error;
}

const steps = [];

async function step(op, args, call) {
  try {
    const result = await call();
    steps.push({ op, args, result });
    return result;
  } catch (error) {
    steps.push({ op, args, error: describe(error) });
    throw error;
  }
}

let failed = false;
try {
  const AddGoalRequest = {
    title: "Deals won (official Node client)",
    assignee: { id: assigneeId, type: "person" },
    type: { name: "deals_won", params: { pipeline_id: null } },
    expected_outcome: { target: 20, tracking_metric: "quantity" },
    duration: { start: periodStart, end: null },
    interval: "monthly",
  };
  const added = await step("addGoal", { AddGoalRequest }, () => goalsApi.addGoal({ AddGoalRequest }));
  const id = added.data.goal.id;

  await step("getGoals", { is_active: true }, () => goalsApi.getGoals({ is_active: true }));

  const resultArgs = { id, period_start: periodStart, period_end: periodEnd };
  await step("getGoalResult", resultArgs, () => goalsApi.getGoalResult(resultArgs));

  const BasicGoalRequest = { title: "Deals won, renamed by the Node client" };
  await step("updateGoal", { id, BasicGoalRequest }, () => goalsApi.updateGoal({ id, BasicGoalRequest }));

  if (!keep) {
    await step("deleteGoal", { id }, () => goalsApi.deleteGoal({ id }));

    await step("getGoals", { is_active: true }, () => goalsApi.getGoals({ is_active: true }));
  }
} catch {
  failed = true;
}

process.stdout.write(`${JSON.stringify({ client: "pipedrive", basePath, steps })}\n`);
process.exitCode = failed ? 1 : 0;
