/** The SQLite store's rows are the shared ones (src/store/schema.ts); this path stays for what imported it here (bench/session-list.ts). */
export * from '../schema.ts';
