// The theme: the user's choice (light, dark, or the system's, which is followed as it changes), kept in
// localStorage; the page's data-theme is what is drawn. The header's toggle and the Settings page both
// change it here and are told of each change, so they stay in sync.

const KEY = "llama-swap.theme";
const dark = matchMedia("(prefers-color-scheme: dark)");
const listeners = new Set();

// "light", "dark" or "system" (nothing stored).
export function themeChoice() {
  const stored = localStorage.getItem(KEY);
  return stored === "light" || stored === "dark" ? stored : "system";
}

function apply() {
  const choice = themeChoice();
  document.documentElement.dataset.theme = choice === "system" ? (dark.matches ? "dark" : "light") : choice;
  listeners.forEach((callback) => callback(choice));
}

export function chooseTheme(choice) {
  if (choice === "system") localStorage.removeItem(KEY); else localStorage.setItem(KEY, choice);
  apply();
}

// The header's toggle: the other of the two themes, chosen explicitly.
export function toggleTheme() {
  chooseTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark");
}

export function onTheme(callback) {
  listeners.add(callback);
  return () => listeners.delete(callback);
}

dark.addEventListener("change", () => { if (themeChoice() === "system") apply(); });
apply();
