// Facts about the 9 CDC questions, the queries of the API and the survey's categories: fixed data,
// no behaviour.

// The exact question texts (as in compute/queries.py), their topic, a short label and which
// direction is better. A question an uploaded file adds that is not here goes to "Other".
export const QUESTIONS = new Map([
  ["Percent of adults aged 18 years and older who have obesity",
    { id: "Q036", topic: "weight", short: "Obesity", better: "lower" }],
  ["Percent of adults aged 18 years and older who have an overweight classification",
    { id: "Q037", topic: "weight", short: "Overweight", better: "lower" }],
  ["Percent of adults who achieve at least 150 minutes a week of moderate-intensity aerobic physical activity or 75 minutes a week of vigorous-intensity aerobic activity (or an equivalent combination)",
    { id: "Q043", topic: "activity", short: "Aerobic activity, 150+ min a week", better: "higher" }],
  ["Percent of adults who achieve at least 150 minutes a week of moderate-intensity aerobic physical activity or 75 minutes a week of vigorous-intensity aerobic physical activity and engage in muscle-strengthening activities on 2 or more days a week",
    { id: "Q044", topic: "activity", short: "Aerobic 150+ min and muscle strengthening", better: "higher" }],
  ["Percent of adults who achieve at least 300 minutes a week of moderate-intensity aerobic physical activity or 150 minutes a week of vigorous-intensity aerobic activity (or an equivalent combination)",
    { id: "Q045", topic: "activity", short: "Aerobic activity, 300+ min a week", better: "higher" }],
  ["Percent of adults who engage in muscle-strengthening activities on 2 or more days a week",
    { id: "Q046", topic: "activity", short: "Muscle strengthening, 2+ days a week", better: "higher" }],
  ["Percent of adults who engage in no leisure-time physical activity",
    { id: "Q047", topic: "activity", short: "No leisure-time physical activity", better: "lower" }],
  ["Percent of adults who report consuming fruit less than one time daily",
    { id: "Q018", topic: "food", short: "Fruit less than once a day", better: "lower" }],
  ["Percent of adults who report consuming vegetables less than one time daily",
    { id: "Q019", topic: "food", short: "Vegetables less than once a day", better: "lower" }],
]);

export const TOPICS = [
  ["weight", "Obesity and weight"],
  ["activity", "Physical activity"],
  ["food", "Fruits and vegetables"],
  ["other", "Other"],
];

// shape: how the result is drawn. value: "mean" (a percentage) or "diff" (national mean minus a
// state's mean, in percentage points). needsState: the API refuses it without a state;
// takesState: a state is optional.
export const QUERIES = {
  states_mean: { group: "Every state", label: "Mean per state", shape: "states", value: "mean",
    hint: "The mean of every state, lowest first." },
  best5: { group: "Every state", label: "The 5 best states", shape: "states", value: "mean",
    hint: "The five states with the best mean, best first." },
  worst5: { group: "Every state", label: "The 5 worst states", shape: "states", value: "mean",
    hint: "The five states with the worst mean, worst first." },
  diff_from_mean: { group: "Every state", label: "Difference from the national mean, per state", shape: "states", value: "diff",
    hint: "National mean minus each state's mean, largest first: a positive number means the state is below the national mean." },
  mean_by_category: { group: "Every state", label: "Mean by category, per state", shape: "bycat", value: "mean",
    hint: "The mean of every state for each segment (age, income, ...)." },
  state_mean: { group: "One state", label: "Mean of one state", shape: "single", value: "mean", needsState: true,
    hint: "The mean of the chosen state, with every state's mean on a map for context." },
  state_diff_from_mean: { group: "One state", label: "Difference from the national mean, one state", shape: "single", value: "diff", needsState: true,
    hint: "National mean minus the chosen state's mean, in percentage points." },
  state_mean_by_category: { group: "One state", label: "Mean by category, one state", shape: "statecat", value: "mean", needsState: true,
    hint: "The chosen state's mean for each segment (age, income, ...)." },
  global_mean: { group: "National", label: "National mean", shape: "single", value: "mean",
    hint: "The mean over every row of the question (not a mean of state means)." },
  trend: { group: "Over the years", label: "Trend over the years", shape: "trend", value: "mean", takesState: true, needsYears: true,
    hint: "The mean per survey year: the chosen state against the national mean, or the national mean alone without a state." },
};

export const NATIONAL = "National";

// A colour per survey category, fixed whatever the data set holds (the CDC's categories, "Sex" and
// "Gender" alike; any other category gets one from its name, so it too keeps its colour from one
// data set to the next).
const CATEGORY_COLOURS = 6;
const KNOWN_CATEGORIES = { "Age (years)": 0, Education: 1, Income: 2, "Race/Ethnicity": 3, Sex: 4, Gender: 4, Total: 5 };

export function categoryColour(category) {
  const known = KNOWN_CATEGORIES[category];
  if (known !== undefined) return known;
  let hash = 0;
  for (const char of category) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return hash % CATEGORY_COLOURS;
}

// Segments in their natural order: education by level, income and age by their first number ("Less
// than $15,000" first), anything without an order ("Data not reported") last, ties in the API's order.
const EDUCATION = ["Less than high school", "High school graduate", "Some college or technical school", "College graduate"];

function segmentRank(category, segment) {
  const level = EDUCATION.indexOf(segment);
  if (category === "Education" && level >= 0) return level;
  if (/^less than\b/i.test(segment)) return -1;
  const number = segment.match(/\d[\d,]*/);
  return number ? Number(number[0].replaceAll(",", "")) : Infinity;
}

export function naturalOrder(category, items, segmentOf = (item) => item.segment) {
  const ranked = items.map((item, position) => ({ item, position, rank: segmentRank(category, segmentOf(item)) }));
  // An order only where most segments have one (not "2 or more races" among race names).
  if (ranked.filter((entry) => entry.rank !== Infinity).length * 2 <= ranked.length) return items;
  ranked.sort((a, b) => (a.rank === b.rank ? a.position - b.position : a.rank < b.rank ? -1 : 1));
  return ranked.map((entry) => entry.item);
}
