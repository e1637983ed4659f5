// htm bound to preact: tagged templates instead of JSX, so nothing needs building. Values are escaped by preact.
import { h } from 'preact';
import htm from 'htm';

export const html = htm.bind(h);
