#!/usr/bin/python3
# browser.py - drives one headless Chromium for the C test suites
# (tests/support/browser.c, prefix brw_), so that a suite can check the web
# pages tokend serves in a real browser: layout at a phone's width, dialogs,
# keyboard, clipboard, cookies, console errors.
#
# Run with Debian's /usr/bin/python3 and Debian's packages only (python3-
# selenium 4.8, chromium, chromium-driver); never the pyenv python on PATH,
# never Selenium Manager, never the network (chromedriver is given by path,
# Selenium Manager is disabled below, Chromium gets no proxy and no
# background networking).
#
# Protocol: one JSON command per line on stdin, one JSON reply per line on
# stdout, flushed:  {"op":"click","css":"#go","id":7}  ->
# {"ok":true,"value":null,"id":7}  or  {"ok":false,"error":"click '#go':
# ...","id":7}. "id", when given, is echoed so that the C side can drop a
# late reply to a command it already gave up on. A bad command never kills
# the driver; it gets ok:false. The first line written is
# {"ok":true,"value":"ready"} once the browser is up (or ok:false, exit 1).
# EOF on stdin, {"op":"quit"}, SIGTERM, SIGHUP or SIGINT quit the browser and
# exit. Every wait has a timeout: "timeout" in seconds, default 5.
#
# fd 1 is kept for the replies only: it is moved to a private descriptor
# and fd 1 itself is pointed at stderr, so that nothing else (a library's
# print, a child's output) can corrupt the reply stream.
import base64
import json
import os
import re
import signal
import sys
import time

DEFAULT_TIMEOUT = 5.0
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

_reply_fd = os.dup(1)
os.set_inheritable(_reply_fd, False)
os.dup2(2, 1)
sys.stdout = sys.stderr
_out = os.fdopen(_reply_fd, "w", encoding="utf-8", buffering=1)

# The driver talks to chromedriver on localhost: an http_proxy in the
# environment must not reroute that (selenium 4.8 honours it).
for _k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
    os.environ.pop(_k, None)


class Quit(Exception):
    pass


def _on_signal(signum, frame):
    raise Quit()


for _s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
    signal.signal(_s, _on_signal)


def reply(obj):
    _out.write(json.dumps(obj, default=_jsonable, separators=(",", ":"), allow_nan=False) + "\n")
    _out.flush()


def one_line(s, limit=600):
    lines = (x.strip() for x in str(s).splitlines())
    s = " | ".join(x for x in lines if x and not x.startswith("(Session info:"))
    return s if len(s) <= limit else s[: limit - 3] + "..."


try:
    from selenium import webdriver
    from selenium.common.exceptions import (
        ElementClickInterceptedException,
        ElementNotInteractableException,
        InvalidSelectorException,
        JavascriptException,
        NoSuchElementException,
        StaleElementReferenceException,
        TimeoutException,
        WebDriverException,
    )
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.remote.webelement import WebElement
    from selenium.webdriver.support.ui import Select, WebDriverWait
    import selenium.webdriver.common.selenium_manager as _sm
except Exception as e:  # noqa: BLE001 - any import failure is fatal here
    reply({"ok": False, "error": "cannot import selenium (Debian package python3-selenium): " + one_line(e)})
    sys.exit(1)


def _no_manager(*a, **k):
    raise WebDriverException("Selenium Manager is disabled in tests/support/browser.py")


# Selenium 4.8 falls back to Selenium Manager (which downloads drivers)
# when the driver is not found; make sure that can never happen.
_sm.SeleniumManager.driver_location = _no_manager


def _jsonable(v):
    if isinstance(v, WebElement):
        try:
            return {"element": v.tag_name}
        except WebDriverException:
            return {"element": None}
    return str(v)


class CmdError(Exception):
    pass


class Browser:
    def __init__(self):
        for p in (CHROMIUM, CHROMEDRIVER):
            if not os.access(p, os.X_OK):
                pkg = "chromium" if p == CHROMIUM else "chromium-driver"
                raise CmdError(f"{p} not found (Debian package {pkg})")
        o = webdriver.ChromeOptions()
        o.binary_location = CHROMIUM
        for a in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1280,800",
            "--hide-scrollbars",  # a 360 px viewport is 360 px of layout
            "--no-first-run",
            "--no-default-browser-check",
            "--no-proxy-server",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--disable-features=Translate,OptimizationHints,MediaRouter",
            "--password-store=basic",
            "--use-mock-keychain",
            "--mute-audio",
        ):
            o.add_argument(a)
        o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        o.set_capability("unhandledPromptBehavior", "dismiss and notify")
        log = os.environ.get("TOKEND_BROWSER_LOG")
        args = ["--verbose", "--log-path=" + log] if log else []
        svc = Service(executable_path=CHROMEDRIVER, service_args=args)
        self.d = webdriver.Chrome(service=svc, options=o)
        self.d.implicitly_wait(0)

    # -- helpers -----------------------------------------------------------

    @staticmethod
    def _timeout(c):
        t = c.get("timeout", DEFAULT_TIMEOUT)
        if not isinstance(t, (int, float)) or isinstance(t, bool) or t < 0:
            raise CmdError("timeout must be a number of seconds")
        return float(t)

    @staticmethod
    def _str(c, key, optional=False):
        v = c.get(key)
        if v is None and optional:
            return None
        if not isinstance(v, str):
            raise CmdError(f'"{key}" (a string) is required')
        return v

    def _wait(self, c, what, cond):
        """Polls cond(driver) until it returns something truthy."""
        t = self._timeout(c)
        try:
            return WebDriverWait(
                self.d, t, poll_frequency=0.05, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
            ).until(cond)
        except TimeoutException:
            raise CmdError(f"timed out after {t:g} s waiting for {what}") from None

    def _find(self, css):
        els = self.d.find_elements(By.CSS_SELECTOR, css)
        return els[0] if els else None

    def _present(self, c):
        css = self._str(c, "css")
        return self._wait(c, "the element to be present", lambda d: self._find(css))

    def _visible(self, c):
        css = self._str(c, "css")

        def cond(d):
            e = self._find(css)
            return e if e is not None and e.is_displayed() else None

        return self._wait(c, "the element to be visible", cond)

    def _usable(self, c):
        css = self._str(c, "css")

        def cond(d):
            e = self._find(css)
            return e if e is not None and e.is_displayed() and e.is_enabled() else None

        return self._wait(c, "the element to be visible and enabled", cond)

    def _cdp(self, cmd, args=None):
        return self.d.execute_cdp_cmd(cmd, args or {})

    # -- commands ----------------------------------------------------------

    def op_get(self, c):
        url = self._str(c, "url")
        self.d.set_page_load_timeout(self._timeout(c))
        try:
            self.d.get(url)
        except TimeoutException:
            raise CmdError(f"timed out after {self._timeout(c):g} s loading {url}") from None
        except WebDriverException as e:
            m = re.sub(r"^unknown error: ", "", one_line(e.msg, 300))
            raise CmdError(f"the page did not load ({m})") from None
        # a network failure loads Chromium's own error page without error
        err = self.d.execute_script(
            "if (!location.href.startsWith('chrome-error:')) return null;"
            "const e = document.querySelector('.error-code'); return e ? e.textContent.trim() : 'network error';"
        )
        if err is not None:
            raise CmdError(f"the page did not load ({err})")
        return None

    def op_url(self, c):
        return self.d.current_url

    def op_size(self, c):
        w, h = c.get("w"), c.get("h")
        if not all(isinstance(x, int) and not isinstance(x, bool) and 0 < x <= 10000 for x in (w, h)):
            raise CmdError('"w" and "h" (positive integers) are required')
        self._cdp("Emulation.setDeviceMetricsOverride", {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": False})
        return None

    def op_wait(self, c):
        css = self._str(c, "css")
        state = c.get("state", "visible")
        if state == "present":
            self._present(c)
        elif state == "visible":
            self._visible(c)
        elif state == "enabled":
            self._usable(c)
        elif state == "gone":

            def gone(d):
                e = self._find(css)
                return e is None or not e.is_displayed()

            self._wait(c, "the element to be gone (absent or hidden)", gone)
        else:
            raise CmdError(f"unknown state {state!r} (visible, present, gone, enabled)")
        return None

    def op_click(self, c):
        css = self._str(c, "css")
        t = self._timeout(c)
        deadline = time.monotonic() + t
        last = None
        while True:
            try:
                e = self._usable(dict(c, timeout=max(0.0, deadline - time.monotonic())))
            except CmdError:
                raise CmdError(f"timed out after {t:g} s waiting for the element to be visible and enabled") from None
            try:
                self.d.execute_script("arguments[0].scrollIntoView({block:'center',inline:'center'});", e)
                e.click()
                return None
            except (ElementClickInterceptedException, ElementNotInteractableException, StaleElementReferenceException) as x:
                # an overlay still fading out, a node re-rendered: retry
                last = x
            if time.monotonic() >= deadline:
                raise CmdError(f"not clickable after {t:g} s: {one_line(last.msg, 300)}")
            time.sleep(0.05)

    def op_type(self, c):
        text = self._str(c, "text")
        e = self._usable(c)
        if c.get("clear"):
            e.clear()
        e.send_keys(text)
        return None

    _SPECIAL = {"Space": " ", " ": " "}
    _MODS = {"Shift": Keys.SHIFT, "Control": Keys.CONTROL, "Ctrl": Keys.CONTROL, "Alt": Keys.ALT, "Meta": Keys.META}

    def _key(self, name):
        if name in self._SPECIAL:
            return self._SPECIAL[name]
        if len(name) == 1:
            return name
        k = getattr(Keys, re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper(), None)
        if not isinstance(k, str):
            raise CmdError(f"unknown key {name!r}")
        return k

    def op_key(self, c):
        key = self._str(c, "key")
        parts = key.split("+") if len(key) > 1 else [key]
        mods = [self._MODS.get(m) for m in parts[:-1]]
        if None in mods:
            raise CmdError(f"unknown modifier in {key!r} (Shift, Control, Alt, Meta)")
        k = self._key(parts[-1])
        if c.get("css") is not None:
            e = self._visible(c)
            self.d.execute_script("if (document.activeElement !== arguments[0]) arguments[0].focus();", e)
        # to whatever has focus: the element just focused, or (no css) the
        # page; works for non-focusable targets too (Escape on a <dialog>)
        a = ActionChains(self.d)
        for m in mods:
            a.key_down(m)
        a.send_keys(k)
        for m in reversed(mods):
            a.key_up(m)
        a.perform()
        return None

    def op_text(self, c):
        e = self._present(c)
        return self.d.execute_script("return arguments[0].innerText ?? arguments[0].textContent;", e)

    def op_value(self, c):
        return self._present(c).get_property("value")

    def op_attr(self, c):
        name = self._str(c, "name")
        return self._present(c).get_dom_attribute(name)

    def op_prop(self, c):
        name = self._str(c, "name")
        return self._present(c).get_property(name)

    def op_count(self, c):
        return len(self.d.find_elements(By.CSS_SELECTOR, self._str(c, "css")))

    def op_visible(self, c):
        e = self._find(self._str(c, "css"))
        try:
            return bool(e is not None and e.is_displayed())
        except StaleElementReferenceException:
            return False

    def op_select(self, c):
        value = self._str(c, "value")
        e = self._usable(c)
        try:
            Select(e).select_by_value(value)
        except NoSuchElementException:
            raise CmdError(f"no <option> with value {value!r}") from None
        except Exception as x:  # UnexpectedTagNameException: not a <select>
            if "select" in str(x).lower():
                raise CmdError(one_line(getattr(x, "msg", None) or x)) from None
            raise
        return None

    @staticmethod
    def _args(c):
        a = c.get("args", [])
        if not isinstance(a, list):
            raise CmdError('"args" must be a list')
        return a

    def op_js(self, c):
        script = self._str(c, "script")
        return self.d.execute_script(script, *self._args(c))

    def op_js_async(self, c):
        script = self._str(c, "script")
        t = self._timeout(c)
        self.d.set_script_timeout(t)
        try:
            return self.d.execute_async_script(script, *self._args(c))
        except TimeoutException:
            raise CmdError(f"timed out after {t:g} s waiting for the script's callback") from None

    # Relies on: Chromium's headless (ozone "headless") in-memory clipboard,
    # which navigator.clipboard reads and writes like a real one; the CDP
    # grant of clipboardReadWrite + clipboardSanitizedWrite for the page's
    # origin (a secure context: http://127.0.0.1 or localhost counts); and
    # the page having focus, which the Clipboard API requires - headless
    # windows are not reliably focused, so focus is emulated through CDP
    # (Emulation.setFocusEmulationEnabled) after switching to the window.
    # The same grant and focus emulation are applied after every "get"
    # (see _prepare_page), so that a copy button clicked by a test works
    # before "clipboard" is ever called.
    def _prepare_page(self):
        origin = self.d.execute_script("return location.origin;")
        perms = {"permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]}
        if isinstance(origin, str) and origin.startswith(("http://", "https://")):
            perms["origin"] = origin
        try:
            self._cdp("Browser.grantPermissions", perms)
        except WebDriverException:
            pass
        self.d.switch_to.window(self.d.current_window_handle)
        self._cdp("Emulation.setFocusEmulationEnabled", {"enabled": True})

    def op_clipboard(self, c):
        self._prepare_page()
        t = self._timeout(c)
        self.d.set_script_timeout(t)
        try:
            r = self.d.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "window.focus();"
                "navigator.clipboard.readText().then(t => done({text: t}),"
                " e => done({error: String(e)}));"
            )
        except TimeoutException:
            raise CmdError(f"timed out after {t:g} s reading the clipboard") from None
        if not isinstance(r, dict) or "text" not in r:
            raise CmdError("navigator.clipboard.readText() failed: " + one_line((r or {}).get("error", r)))
        return r["text"]

    # The whole page by default ("full": false: the viewport only). In a
    # full-page shot, position:fixed things (a modal <dialog>'s backdrop, a
    # sticky header) are drawn once, where the viewport is scrolled to.
    def op_shot(self, c):
        path = self._str(c, "path")
        if c.get("full", True) is False:
            data = base64.b64decode(self._cdp("Page.captureScreenshot", {"format": "png"})["data"])
            with open(path, "wb") as f:
                f.write(data)
            vp = self.d.execute_script("return [innerWidth, innerHeight];")
            return {"path": path, "width": vp[0], "height": vp[1]}
        m = self._cdp("Page.getLayoutMetrics")
        vp = m.get("cssLayoutViewport") or m.get("layoutViewport") or {}
        cs = m.get("cssContentSize") or m.get("contentSize") or {}
        w = int(vp.get("clientWidth") or cs.get("width") or 0)
        h = int(min(max(cs.get("height", 0), vp.get("clientHeight", 0)), 16384))
        args = {"format": "png", "captureBeyondViewport": True}
        if w > 0 and h > 0:
            args["clip"] = {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}
        data = base64.b64decode(self._cdp("Page.captureScreenshot", args)["data"])
        with open(path, "wb") as f:
            f.write(data)
        return {"path": path, "width": w, "height": h}

    def op_cookies(self, c):
        keys = ("name", "value", "httpOnly", "secure", "sameSite", "path", "domain")
        return [{k: ck.get(k) for k in keys} for ck in self.d.get_cookies()]

    # Entries since the previous "console" (chromedriver drains its buffer).
    def op_console(self, c):
        return [{"level": e.get("level"), "message": e.get("message")} for e in self.d.get_log("browser")]

    def quit(self):
        try:
            self.d.quit()
        except Exception:  # noqa: BLE001 - nothing more to do on the way out
            pass


def run(b, c):
    op = c.get("op")
    if not isinstance(op, str) or not hasattr(b, "op_" + op):
        raise CmdError(f"unknown op {op!r}")
    v = getattr(b, "op_" + op)(c)
    if op == "get":
        b._prepare_page()
    return v


def describe(c):
    op = c.get("op") if isinstance(c, dict) else None
    s = str(op) if op else "command"
    if isinstance(c, dict) and isinstance(c.get("css"), str):
        s += f" {c['css']!r}"
    elif isinstance(c, dict) and op == "get" and isinstance(c.get("url"), str):
        s += f" {c['url']}"
    return s


def main():
    try:
        b = Browser()
    except Quit:
        sys.exit(1)
    except Exception as e:  # noqa: BLE001
        reply({"ok": False, "error": "browser start failed: " + one_line(getattr(e, "msg", None) or e)})
        sys.exit(1)
    try:
        reply({"ok": True, "value": "ready"})
        for line in sys.stdin:
            if not line.strip():
                continue
            c = None
            try:
                c = json.loads(line)
                if not isinstance(c, dict):
                    raise CmdError("a command is a JSON object")
            except (ValueError, CmdError) as e:
                reply({"ok": False, "error": "bad command: " + one_line(e)})
                continue
            r = {}
            if "id" in c:
                r["id"] = c["id"]
            if c.get("op") == "quit":
                reply(dict(r, ok=True, value=None))
                break
            try:
                r.update(ok=True, value=run(b, c))
            except Quit:
                raise
            except CmdError as e:
                r.update(ok=False, error=f"{describe(c)}: {e}")
            except InvalidSelectorException as e:
                r.update(ok=False, error=f"{describe(c)}: {one_line(e.msg, 300)}")
            except JavascriptException as e:
                m = one_line(e.msg, 400)
                m = m if m.startswith("javascript error") else "javascript error: " + m
                r.update(ok=False, error=f"{describe(c)}: {m}")
            except WebDriverException as e:
                r.update(ok=False, error=f"{describe(c)}: {type(e).__name__}: {one_line(e.msg, 400)}")
            except Exception as e:  # noqa: BLE001 - never die on a command
                r.update(ok=False, error=f"{describe(c)}: {type(e).__name__}: {one_line(e, 400)}")
            try:
                reply(r)
            except (TypeError, ValueError) as e:
                reply({"id": r.get("id"), "ok": False, "error": f"{describe(c)}: reply not JSON: {one_line(e)}"})
    except (Quit, BrokenPipeError, KeyboardInterrupt):
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        b.quit()


if __name__ == "__main__":
    main()
