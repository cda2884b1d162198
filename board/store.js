/**
 * A tiny observable store (one object, replaced on every change) and the hook that re-renders a component when
 * it changes.
 * @module
 */
import { useEffect, useState } from "preact/hooks";

/**
 * @template T
 * @typedef {{ get(): T, set(patch: Partial<T> | ((s: T) => Partial<T>)): void, subscribe(fn: (s: T) => void): () => void }} Store
 */

/**
 * A store holding `initial`.
 * @template {object} T
 * @param {T} initial
 * @returns {Store<T>}
 */
export function createStore(initial) {
  let state = initial;
  /** @type {Set<(s: T) => void>} */
  const subs = new Set();
  return {
    get: () => state,
    set(patch) {
      state = { ...state, ...(typeof patch === "function" ? patch(state) : patch) };
      for (const fn of subs) fn(state);
    },
    subscribe(fn) {
      subs.add(fn);
      return () => subs.delete(fn);
    },
  };
}

/**
 * The store's state, re-rendering the calling component on every change.
 * @template T
 * @param {Store<T>} store
 * @returns {T}
 */
export function useStore(store) {
  const [state, setState] = useState(store.get());
  useEffect(() => {
    setState(store.get());
    return store.subscribe(setState);
  }, [store]);
  return state;
}
