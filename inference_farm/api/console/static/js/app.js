// The console: sign in with an API key, then one view per page, chosen by the URL fragment.
import { ApiError, forgetKey, get, saveKey, savedKey } from "./api.js";
import { clear, h, notify } from "./dom.js";
import { Live } from "./live.js";
import jobs from "./pages/jobs.js";
import keys from "./pages/keys.js";
import models from "./pages/models.js";
import overview from "./pages/overview.js";
import playground from "./pages/playground.js";
import workers from "./pages/workers.js";

// Each page: { title, needs (a scope, or null for any key), mount(root, ctx) → cleanup }.
const PAGES = { overview, models, playground, jobs, workers, keys };
const main = document.getElementById("main");
let session = null; // { me, live, cleanup }

export function allows(me, scope) {
  return !scope || me.scopes.includes(scope) || me.scopes.includes("admin");
}

function signInView(message) {
  const input = h("input", { type: "password", id: "key", name: "key", autocomplete: "off", required: true, "aria-describedby": "key-help" });
  const error = h("p.error", { id: "signin-error", role: "alert", text: message || "" });
  const form = h(
    "form.card.signin",
    { "aria-label": "Sign in", on: { submit: (event) => { event.preventDefault(); signIn(input.value.trim(), error); } } },
    h("h1", { text: "Sign in" }),
    h("label", { for: "key", text: "API key" }),
    input,
    h("p.help", { id: "key-help", text: "The key stays in this tab only (sessionStorage) and is sent as a Bearer token." }),
    h("button", { type: "submit", text: "Sign in" }),
    error,
  );
  clear(document.getElementById("nav"));
  clear(document.getElementById("who"));
  clear(main).append(form);
  input.focus();
}

async function signIn(key, errorBox) {
  if (!key) {
    errorBox.textContent = "Enter an API key.";
    return;
  }
  saveKey(key);
  try {
    await start();
  } catch (error) {
    forgetKey();
    errorBox.textContent = error instanceof ApiError && error.status === 401
      ? `Signing in failed: ${error.message}.`
      : `Signing in failed: ${error.message}`;
  }
}

function signOut(message) {
  if (session) {
    session.live.stop();
    if (session.cleanup) session.cleanup();
  }
  session = null;
  forgetKey();
  signInView(message);
}

async function start() {
  const me = await get("/v1/keys/me");
  const live = new Live({ onSignedOut: (message) => signOut(`Signed out: ${message}.`) });
  session = { me, live, cleanup: null };
  buildChrome(me, live);
  live.start();
  route();
}

function buildChrome(me, live) {
  const nav = clear(document.getElementById("nav"));
  for (const [name, page] of Object.entries(PAGES)) {
    if (allows(me, page.needs)) nav.append(h("a", { href: `#/${name}`, "data-page": name, text: page.title }));
  }
  const state = h("span.link-state", { text: "connecting…", "aria-live": "polite" });
  live.on("status", ({ connected }) => {
    state.textContent = connected ? "live" : "reconnecting…";
    state.classList.toggle("down", !connected);
  });
  live.on("hello", () => { state.textContent = "live"; });
  const out = h("button.secondary", { type: "button", text: "Sign out", on: { click: () => signOut("") } });
  clear(document.getElementById("who")).append(state, h("span.key-name", { text: me.name }), out);
}

function route() {
  if (!session) return;
  const [first, ...args] = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const name = first || "overview";
  const page = PAGES[name];
  if (session.cleanup) session.cleanup();
  session.cleanup = null;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  clear(main);
  if (!page || !allows(session.me, page.needs)) {
    main.append(h("section.card", {}, h("h1", { text: "Not available" }), h("p", { text: page ? `This page needs the scope ${page.needs}.` : "No such page." })));
    return;
  }
  document.title = `${page.title} · inference-farm console`;
  const ctx = {
    me: session.me, live: session.live, args,
    allows: (scope) => allows(session.me, scope),
    flowerUrl: document.body.dataset.flowerUrl || "",
    navigate: (hash) => { location.hash = hash; },
  };
  try {
    session.cleanup = page.mount(main, ctx) || null;
  } catch (error) {
    notify(`This page failed: ${error.message}`, "error");
  }
}

window.addEventListener("hashchange", route);
window.addEventListener("unhandledrejection", (event) => {
  const error = event.reason;
  if (error instanceof ApiError && error.status === 401) signOut(`Signed out: ${error.message}.`);
  else if (error instanceof ApiError) notify(error.message, "error");
});

if (savedKey()) start().catch((error) => signOut(`Signing in failed: ${error.message}.`));
else signInView("");
