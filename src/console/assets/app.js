// The console's start: find the token (a `#token=` link, then this tab's sessionStorage, else
// the sign-in form), check it with /api/me, then show the chat and, for an `admin` token, the
// admin view. The token never goes into a URL the server sees: the fragment stays in the
// browser and is removed from the address bar at once.

import { Api } from "./api.js";
import { Admin } from "./admin.js";
import { Chat } from "./chat.js";
import { byId } from "./dom.js";
import { Socket } from "./socket.js";

const TOKEN_KEY = "tidings.token";

/** Takes `#token=T` out of the address bar, keeping it for this tab only. */
function tokenFromFragment() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("token");
  if (!token) return null;
  history.replaceState(null, "", location.pathname + location.search);
  return token;
}

function showSignIn(message = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  for (const id of ["chat", "admin", "tabs", "sign-out"]) byId(id).hidden = true;
  byId("sign-in").hidden = false;
  byId("sign-in-error").textContent = message;
  byId("who").textContent = "";
  byId("connection").textContent = "";
}

let signedIn = null;

function signOut(message) {
  signedIn?.socket.stop();
  signedIn?.admin?.stop();
  signedIn = null;
  showSignIn(message);
}

async function signIn(token) {
  const expired = () => signOut("Your token expired or was refused: sign in with a fresh one.");
  const api = new Api(token, expired);
  let me;
  try {
    me = await api.get("/api/me");
  } catch (error) {
    showSignIn(error.status === 401 ? "That token was refused." : `Cannot sign in: ${error.message}`);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  byId("sign-in").hidden = true;
  byId("sign-out").hidden = false;
  byId("who").textContent = me.name ? `${me.name} (${me.userId})` : me.userId;
  byId("chat").hidden = false;
  const chat = new Chat(api, me);
  const socket = new Socket({
    token,
    lastSeen: () => chat.resumePoints(),
    onFrame: (frame) => chat.onFrame(frame),
    onState: (state) => { byId("connection").textContent = state; },
    onResumed: () => chat.onResumed(),
    tokenStillValid: async () => {
      try {
        await api.get("/api/me");
        return true;
      } catch (error) {
        return error.status !== 401;
      }
    },
    onExpired: expired,
  });
  chat.socket = socket;
  const admin = me.scopes.includes("admin") ? new Admin(api) : null;
  signedIn = { socket, admin };
  if (admin) wireTabs(admin);
  try {
    await chat.start();
  } catch (error) {
    byId("composer-error").textContent = error.message;
  }
  // Connected after the list is loaded: the resume starts from each conversation's last message.
  socket.start();
}

function wireTabs(admin) {
  byId("tabs").hidden = false;
  const show = (adminView) => {
    byId("chat").hidden = adminView;
    byId("admin").hidden = !adminView;
    byId("tab-chat").setAttribute("aria-pressed", String(!adminView));
    byId("tab-admin").setAttribute("aria-pressed", String(adminView));
    if (adminView) admin.start();
    else admin.stop();
  };
  byId("tab-chat").addEventListener("click", () => show(false));
  byId("tab-admin").addEventListener("click", () => show(true));
}

byId("sign-in-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = byId("token-input").value.trim();
  byId("token-input").value = "";
  if (token) signIn(token);
});
byId("sign-out").addEventListener("click", () => signOut(""));

const token = tokenFromFragment() || sessionStorage.getItem(TOKEN_KEY);
if (token) signIn(token);
else showSignIn();
